//! Email end to end: mail posted to `patchbay serve` reaches a mock
//! application; replies leave through a real SMTP conversation with a server
//! the test runs on 127.0.0.1.

use serde_json::{Value, json};

use crate::harness::*;
use crate::smtp_server::SmtpServer;

const TOKEN: &str = "inbound-token-e2e";
const CUSTOMER: &str = "alice@example.com";

struct Email {
    app: Mock,
    smtp: SmtpServer,
    host: Host,
}

async fn setup() -> Email {
    let app = Mock::start().await;
    let integration = Mock::start().await;
    let smtp = SmtpServer::start().await;
    let mut options = HostOptions::new(&app.url("/patchbay"), &integration.url("/outbound"));
    options.extra_channel_toml = format!(
        r#"
[channels.email]
adapter = "email"
secrets = {{ inbound_token = "{TOKEN}" }}
[channels.email.settings]
from = "Shop Support <support@shop.example>"
inbound = "sendgrid"
smtp = {{ host = "127.0.0.1", port = {port}, security = "none", hello_name = "gw.shop.example" }}
"#,
        port = smtp.addr.port(),
    );
    let host = Host::start(options);
    Email { app, smtp, host }
}

fn mime(message_id: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice Martin <{CUSTOMER}>\r\nTo: support@shop.example\r\n\
         Subject: Where is my order?\r\nMessage-ID: <{message_id}>\r\n{extra_headers}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .into_bytes()
}

impl Email {
    async fn post_mime(&self, body: Vec<u8>, token: &str) -> reqwest::Response {
        let auth = format!("Bearer {token}");
        self.host
            .post_raw(
                "/webhooks/email",
                &[("content-type", "message/rfc822"), ("authorization", &auth)],
                body,
            )
            .await
    }

    async fn send(&self, conversation: Value, content: Value, context: Value) -> String {
        self.host
            .send_id(
                "email",
                &json!({"conversation": conversation, "content": content, "context": context}),
            )
            .await
    }
}

#[tokio::test]
async fn mail_in_then_a_threaded_reply_out_over_smtp() {
    let s = setup().await;
    let first = mime(
        "reply.2@mail.example.com",
        "In-Reply-To: <root.1@mail.example.com>\r\nReferences: <root.1@mail.example.com>\r\n",
        "Any news?\r\n\r\nOn Fri, 20 Nov 2026, Shop Support wrote:\r\n> We are on it.\r\n",
    );
    assert_eq!(s.post_mime(first.clone(), TOKEN).await.status(), 200);
    // A provider retry of the same mail reaches the application once.
    assert_eq!(s.post_mime(first, TOKEN).await.status(), 200);
    assert_eq!(
        s.post_mime(mime("x.9@mail.example.com", "", "hi"), "wrong-token")
            .await
            .status(),
        401
    );

    let got = s.app.wait_for(1).await;
    let inbound = got[0].json();
    assert_eq!(inbound["channel"], "email");
    assert_eq!(inbound["conversation"]["id"], CUSTOMER);
    assert_eq!(
        inbound["conversation"]["thread_id"],
        "root.1@mail.example.com"
    );
    assert_eq!(
        inbound["content"],
        json!({"type": "text", "text": "Any news?"})
    );
    assert_eq!(inbound["context"]["email_subject"], "Where is my order?");

    // The application answers in the thread, passing the context back.
    let id = s
        .send(
            inbound["conversation"].clone(),
            json!({"type": "buttons", "text": "It ships tomorrow.", "buttons": [
                {"title": "Track", "action": {"type": "link", "url": "https://track.example/42"}},
                {"title": "Talk to a person", "action": {"type": "postback", "payload": "AGENT"}}]}),
            inbound["context"].clone(),
        )
        .await;
    let mails = s.smtp.wait_for(1).await;
    let mail = &mails[0];
    assert_eq!(mail.from, "support@shop.example");
    assert_eq!(mail.to, [CUSTOMER]);
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Re: Where is my order?")
    );
    assert_eq!(
        mail.header("in-reply-to").as_deref(),
        Some("<reply.2@mail.example.com>")
    );
    assert_eq!(
        mail.header("references").as_deref(),
        Some("<root.1@mail.example.com> <reply.2@mail.example.com>")
    );
    assert!(
        mail.header("content-type")
            .is_some_and(|ct| ct.starts_with("multipart/alternative"))
    );
    assert!(mail.data.contains("text/html"), "{}", mail.data);
    assert!(mail.data.contains("https://track.example/42"));
    assert!(
        mail.data.contains("%5Bpb%3AAGENT%5D"),
        "reply link carries the payload"
    );

    let receipts = s.app.wait_for(2).await;
    let receipt = receipts[1].json();
    assert_eq!(receipt["content"]["status"], "Delivered");
    assert_eq!(receipt["content"]["message_id"], id.as_str());
    assert_eq!(
        mail.header("message-id"),
        Some(format!(
            "<{}>",
            receipt["content"]["provider_message_id"]
                .as_str()
                .expect("id")
        ))
    );
}

#[tokio::test]
async fn smtp_4xx_is_retried_then_delivered_and_5xx_fails_530() {
    let s = setup().await;
    s.smtp
        .script_data(&["451 4.7.1 Greylisted, try again later"]);
    s.send(
        json!({"id": CUSTOMER}),
        json!({"type": "text", "text": "Your refund is on its way."}),
        json!({}),
    )
    .await;
    let mails = s.smtp.wait_for(1).await;
    assert_eq!(s.smtp.data_attempts(), 2, "refused once, then accepted");
    assert!(mails[0].data.contains("Your refund is on its way."));
    let got = s.app.wait_for(1).await;
    assert_eq!(got[0].json()["content"]["status"], "Delivered");

    s.smtp.refuse(
        "nobody@example.com",
        "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown",
    );
    s.send(
        json!({"id": "nobody@example.com"}),
        json!({"type": "text", "text": "hello?"}),
        json!({}),
    )
    .await;
    let got = s.app.wait_for(2).await;
    let failed = got[1].json();
    assert_eq!(failed["content"]["status"], "Failed");
    assert_eq!(failed["content"]["reasons"][0]["code"], 530);
    s.host.idle().await;
    assert_eq!(
        s.smtp.accepted().len(),
        1,
        "the refused mail is not retried"
    );
}

#[tokio::test]
async fn a_sendgrid_post_with_an_attachment_reaches_the_application() {
    let s = setup().await;
    let boundary = "xYzZY";
    let part = |name: &str, value: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
    };
    let body = format!(
        "{}{}{}{}--{boundary}\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"label.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--{boundary}--\r\n",
        part(
            "headers",
            "From: Alice Martin <alice@example.com>\r\nMessage-ID: <sg.1@mail.example.com>"
        ),
        part("from", "Alice Martin <alice@example.com>"),
        part("subject", "Label"),
        part("text", "Here it is."),
    );
    // SendGrid can only put credentials in the URL.
    let res = client()
        .post(format!("{}/webhooks/email?token={TOKEN}", s.host.url))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    let got = s.app.wait_for(1).await;
    let content = &got[0].json()["content"];
    assert_eq!(content["type"], "attachments");
    assert_eq!(content["text"], "Here it is.");
    assert_eq!(content["attachments"][0]["filename"], "label.png");
    assert_eq!(
        content["attachments"][0]["url"],
        "data:image/png;base64,UE5HREFUQQ=="
    );
}
