//! Rich content → Adaptive Cards (version 1.3, what Webex renders).
//!
//! Every submit action carries `{"payload": …}` and every choice set has the id
//! `payload`, so a submission reads back as one postback payload.

use patchbay_plugin_sdk::prelude::*;
use serde_json::{Value, json};

/// The content type Webex expects for card attachments.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// A card plus the text shown by clients that cannot render cards.
pub(crate) struct Rendered {
    pub card: Value,
    pub fallback: String,
}

fn card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    let mut card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.3",
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    card
}

fn text_block(text: &str, bold: bool) -> Value {
    let mut block = json!({"type": "TextBlock", "text": text, "wrap": true});
    if bold {
        block["weight"] = json!("Bolder");
    }
    block
}

fn action(button: &Button) -> Value {
    match &button.action {
        ButtonAction::Postback { payload } => {
            json!({"type": "Action.Submit", "title": button.title, "data": {"payload": payload}})
        }
        ButtonAction::Link { url } => {
            json!({"type": "Action.OpenUrl", "title": button.title, "url": url})
        }
    }
}

/// Text with one action per button.
pub(crate) fn buttons(text: &str, buttons: &[Button]) -> Rendered {
    Rendered {
        card: card(
            vec![text_block(text, false)],
            buttons.iter().map(action).collect(),
        ),
        fallback: text.to_string(),
    }
}

/// A heading and a choice set submitted with one button.
pub(crate) fn list_picker(title: &str, items: &[ListItem]) -> Rendered {
    let choices: Vec<Value> = items
        .iter()
        .map(|item| json!({"title": item.label(), "value": item.payload}))
        .collect();
    let body = vec![
        text_block(title, true),
        json!({"type": "Input.ChoiceSet", "id": "payload", "style": "expanded",
               "isRequired": true, "choices": choices}),
    ];
    Rendered {
        card: card(
            body,
            vec![json!({"type": "Action.Submit", "title": "Send"})],
        ),
        fallback: title.to_string(),
    }
}

/// Cards stacked vertically, each a container with its own buttons.
pub(crate) fn carousel(cards: &[Card]) -> Rendered {
    let body: Vec<Value> = cards
        .iter()
        .map(|c| {
            let mut items = vec![text_block(&c.title, true)];
            if let Some(sub) = &c.subtitle {
                items.push(json!({"type": "TextBlock", "text": sub, "wrap": true,
                                  "isSubtle": true, "spacing": "None"}));
            }
            if let Some(image) = &c.image_url {
                items.push(json!({"type": "Image", "url": image, "altText": c.title}));
            }
            if !c.buttons.is_empty() {
                items.push(json!({"type": "ActionSet",
                                  "actions": c.buttons.iter().map(action).collect::<Vec<_>>()}));
            }
            json!({"type": "Container", "separator": true, "items": items})
        })
        .collect();
    let fallback = cards
        .iter()
        .map(|c| c.title.as_str())
        .collect::<Vec<_>>()
        .join(" · ");
    Rendered {
        card: card(body, Vec::new()),
        fallback,
    }
}
