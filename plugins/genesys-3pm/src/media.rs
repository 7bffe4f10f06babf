//! Attachments: each file is fetched, uploaded to
//! `POST {api_url}/channels/{channel}/media` (multipart, field `file`,
//! signed over the multipart body like any request) and the message then
//! names the uploads' `genesys://nexus/…` URLs.
//!
//! Assumed where the documents are silent: the signature covers the
//! multipart bytes; the message is `type: "RichMedia"` with the text, if
//! any, and `content: [{url, filename, mimetype}]`, one entry per upload.

use patchbay_plugin_sdk::adapter::{HttpRequestSpec, ProviderResponse};
use patchbay_plugin_sdk::error::AdapterError;
use patchbay_plugin_sdk::message::{Attachment, ReasonCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An attachment send in progress, carried from step to step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MediaSend {
    /// The Genesys channel id (path).
    pub channel: String,
    /// The message's `channel` block (from, to, messageId).
    pub envelope: Value,
    /// Text sent with the files.
    pub text: Option<String>,
    /// The files, in order.
    pub files: Vec<Attachment>,
    /// What Genesys answered for each file uploaded so far.
    pub uploaded: Vec<Value>,
    /// The customer message's trace id.
    pub trace: Option<String>,
    /// Makes the multipart boundary (Patchbay's message id: stable on retries).
    pub boundary: String,
}

impl MediaSend {
    /// The next file to fetch, if any is left.
    pub fn next_file(&self) -> Option<&Attachment> {
        self.files.get(self.uploaded.len())
    }

    /// The upload of the file just fetched, unsigned.
    pub fn upload(
        &self,
        api_url: &str,
        fetched: &ProviderResponse,
    ) -> Result<HttpRequestSpec, AdapterError> {
        let file = self
            .next_file()
            .ok_or_else(|| AdapterError::permanent("no file left to upload"))?;
        if !fetched.is_success() {
            return Err(fetched
                .classify_http_error("fetching the attachment")
                .with_reason(ReasonCode::INVALID_STRUCTURE));
        }
        let mime = file
            .content_type
            .clone()
            .or_else(|| fetched.header("content-type").map(str::to_string))
            .unwrap_or_else(|| "application/octet-stream".into());
        let name = file
            .filename
            .clone()
            .unwrap_or_else(|| file_name(&file.url))
            .replace(['"', '\r', '\n'], "_");
        let boundary = format!("patchbay-{}", self.boundary);
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&fetched.body);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Ok(HttpRequestSpec {
            method: "POST".into(),
            url: format!(
                "{api_url}/channels/{}/media",
                patchbay_plugin_sdk::url::encode_component(&self.channel)
            ),
            headers: vec![(
                "content-type".into(),
                format!("multipart/form-data; boundary={boundary}"),
            )],
            body,
            auth_profile: None,
        })
    }

    /// Records Genesys' answer to an upload.
    pub fn uploaded(&mut self, response: &ProviderResponse) -> Result<(), AdapterError> {
        if !response.is_success() {
            return Err(response.classify_http_error("Genesys media upload"));
        }
        let answer: Value = serde_json::from_slice(&response.body).unwrap_or_default();
        let code = answer
            .pointer("/status/code")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let data = answer.get("data").filter(|d| d.get("url").is_some());
        match data {
            Some(data) if code == 0 => {
                self.uploaded.push(json!({
                    "url": data["url"],
                    "filename": data.get("filename").cloned().unwrap_or(Value::Null),
                    "mimetype": data.get("mimetype").cloned().unwrap_or(Value::Null),
                }));
                Ok(())
            }
            _ => Err(AdapterError::permanent(format!(
                "Genesys refused the media upload: status {code}"
            ))
            .with_reason(ReasonCode::INVALID_STRUCTURE)),
        }
    }

    /// The message naming every upload.
    pub fn message(&self) -> Value {
        let mut entry = json!({
            "channel": self.envelope,
            "type": "RichMedia",
            "content": self.uploaded,
        });
        if let Some(text) = &self.text {
            entry["text"] = json!(text);
        }
        entry
    }
}

/// The last path segment of a URL, for a file without a name.
fn file_name(url: &str) -> String {
    if url.starts_with("data:") {
        return "attachment".into();
    }
    url.split(['?', '#'])
        .next()
        .and_then(|path| path.rsplit('/').next())
        .filter(|name| !name.is_empty())
        .unwrap_or("attachment")
        .to_string()
}
