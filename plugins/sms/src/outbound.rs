//! Canonical messages → Twilio's Messages API; its answers → delivered or
//! classified errors.

use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::base64_encode;
use serde_json::Value;

use crate::{Sender, Sms};

/// The query parameter of the status callback URL naming Patchbay's message.
pub(crate) const MESSAGE_ID_PARAM: &str = "patchbay_message_id";

pub(crate) fn render(sms: &Sms, message: &Message) -> Step {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("To", &message.conversation.id);
    match &sms.sender {
        Sender::Number(number) => form.append_pair("From", number),
        Sender::Service(sid) => form.append_pair("MessagingServiceSid", sid),
    };
    match &message.content {
        Content::Text { text, .. } => {
            form.append_pair("Body", text);
        }
        Content::Attachments { attachments, text } => {
            if let Some(text) = text {
                form.append_pair("Body", text);
            }
            for a in attachments {
                form.append_pair("MediaUrl", &a.url);
            }
        }
        // Nothing to show on a phone.
        Content::EndSession { .. } | Content::ContextData { .. } => {
            return Step::delivered(None);
        }
        other => return Step::fail(AdapterError::unsupported("SMS", other.kind())),
    }
    if sms.status_callbacks && !message.id.is_empty() {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair(MESSAGE_ID_PARAM, &message.id)
            .finish();
        form.append_pair("StatusCallback", &format!("{}?{query}", sms.webhook_url));
    }
    let credentials = format!("{}:{}", sms.account_sid, sms.auth_token.expose());
    let request = HttpRequestSpec {
        method: "POST".into(),
        url: format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            sms.api, sms.account_sid
        ),
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            (
                "authorization".into(),
                format!("Basic {}", base64_encode(credentials.as_bytes())),
            ),
        ],
        body: form.finish().into_bytes(),
        auth_profile: None,
    };
    Step::request(request, &())
}

pub(crate) fn resume(response: ProviderResponse) -> Step {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if response.is_success() {
        return Step::delivered(body["sid"].as_str().map(str::to_string));
    }
    let code = body["code"].as_u64();
    let detail = match code {
        Some(code) => format!("Twilio answered HTTP {} (error {code})", response.status),
        None => format!("Twilio answered HTTP {}", response.status),
    };
    let error = match (response.status, code) {
        (429, _) | (_, Some(20429)) => {
            AdapterError::rate_limited(response.retry_after_ms(), detail)
        }
        // Not a valid (mobile) number.
        (_, Some(21211 | 21614 | 21217)) => {
            AdapterError::permanent(detail).with_reason(ReasonCode::INVALID_DESTINATION)
        }
        // The recipient replied STOP.
        (_, Some(21610)) => AdapterError::permanent(detail).with_reason(ReasonCode::NOT_ALLOWED),
        (401, _) => AdapterError::permanent(format!(
            "{detail}; check settings.account_sid and secrets.auth_token"
        )),
        _ => response.classify_http_error("Twilio"),
    };
    Step::fail(error)
}
