//! Twilio's form webhooks → canonical messages and receipts.

use patchbay_plugin_sdk::message::{Reason, ReceiptStatus};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::signature::{base64_encode, constant_time_eq, hmac_sha1};

use crate::Sms;
use crate::outbound::MESSAGE_ID_PARAM;

/// The empty TwiML document: "received, nothing to reply".
const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

/// The first field called `name`, if it has a value.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Base64 `HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 …)` with
/// the parameters sorted by name (a stable sort keeps repeated names in order).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut data = url.to_string();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    base64_encode(&hmac_sha1(auth_token.as_bytes(), data.as_bytes()))
}

/// A status callback rather than an incoming message.
fn is_status_callback(fields: &[(String, String)]) -> bool {
    field(fields, "MessageStatus").is_some_and(|s| s != "received")
}

pub(crate) fn verify(sms: &Sms, request: &InboundRequest) -> Result<Verdict, Rejection> {
    let received = request
        .header("x-twilio-signature")
        .ok_or_else(|| Rejection::unauthorized("missing X-Twilio-Signature"))?;
    let fields = request.form();
    let expected = signature(sms.auth_token.expose(), &request.url, &fields);
    if !constant_time_eq(received.trim().as_bytes(), expected.as_bytes()) {
        return Err(Rejection::unauthorized("X-Twilio-Signature mismatch"));
    }
    let sid = field(&fields, "MessageSid")
        .or_else(|| field(&fields, "SmsSid"))
        .ok_or_else(|| Rejection::bad_request("no MessageSid"))?;
    // What parsing needs, checked before anything is stored.
    if is_status_callback(&fields) {
        if field(&fields, "To").is_none() {
            return Err(Rejection::bad_request("status callback without To"));
        }
    } else if field(&fields, "From").is_none() || field(&fields, "MessageSid").is_none() {
        return Err(Rejection::bad_request(
            "message webhook without From or MessageSid",
        ));
    }
    // Each status of a message is its own event; the message itself is one.
    let dedupe_key = match field(&fields, "MessageStatus") {
        Some(status) if is_status_callback(&fields) => format!("status:{sid}:{status}"),
        _ => format!("message:{sid}"),
    };
    Ok(Verdict::accept_with(
        AckResponse::with_body("text/xml", EMPTY_TWIML),
        Some(dedupe_key),
    ))
}

pub(crate) fn parse(request: &InboundRequest) -> Step {
    let fields = request.form();
    if is_status_callback(&fields) {
        return Step::messages(status_callback(request, &fields).into_iter().collect());
    }
    let (Some(from), Some(sid)) = (field(&fields, "From"), field(&fields, "MessageSid")) else {
        return Step::fail(AdapterError::bad_input(
            "message webhook without From or MessageSid",
        ));
    };
    let text = field(&fields, "Body").unwrap_or_default().to_string();
    let media_count: usize = field(&fields, "NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let media: Vec<Attachment> = (0..media_count.min(10))
        .filter_map(|i| {
            Some(Attachment {
                url: field(&fields, &format!("MediaUrl{i}"))?.to_string(),
                filename: None,
                content_type: field(&fields, &format!("MediaContentType{i}")).map(str::to_string),
                size: None,
            })
        })
        .collect();
    let content = if media.is_empty() {
        Content::text(text)
    } else {
        Content::Attachments {
            attachments: media,
            text: (!text.is_empty()).then_some(text),
        }
    };
    let mut m = Message::new(from, content);
    m.sender = Some(Participant::id(from));
    m.recipient = field(&fields, "To").map(Participant::id);
    m.provider_message_id = Some(sid.to_string());
    Step::messages(vec![m])
}

/// A receipt for the Patchbay message named in the callback URL.
fn status_callback(request: &InboundRequest, fields: &[(String, String)]) -> Option<Message> {
    let message_id = request.query(MESSAGE_ID_PARAM)?;
    let status = match field(fields, "MessageStatus")? {
        "delivered" => ReceiptStatus::Delivered,
        "read" => ReceiptStatus::Read,
        "undelivered" | "failed" => ReceiptStatus::Failed,
        // queued, accepted, sending, sent, scheduled…: not an outcome yet.
        _ => return None,
    };
    let reasons = match status {
        ReceiptStatus::Failed => {
            let code = field(fields, "ErrorCode").unwrap_or_default();
            vec![Reason {
                code: reason_for(code),
                message: Some(format!("Twilio error {code}")),
            }]
        }
        _ => Vec::new(),
    };
    let receipt = DeliveryReceipt {
        message_id,
        provider_message_id: field(fields, "MessageSid").map(str::to_string),
        status,
        reasons,
        adjustments: Vec::new(),
    };
    let customer = field(fields, "To")?;
    let mut m = Message::new(customer, Content::Receipt(receipt));
    m.provider_message_id = field(fields, "MessageSid").map(str::to_string);
    Some(m)
}

/// Twilio delivery error codes → reason codes.
fn reason_for(error_code: &str) -> ReasonCode {
    match error_code {
        // Unreachable, unknown or landline destination.
        "30003" | "30005" | "30006" => ReasonCode::INVALID_DESTINATION,
        // Filtered by the carrier.
        "30007" => ReasonCode::NOT_ALLOWED,
        // Queue overflow, rate limits exceeded.
        "30001" | "30022" => ReasonCode::RATE_LIMITED,
        _ => ReasonCode::GENERAL,
    }
}
