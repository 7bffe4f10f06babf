//! The canonical model's wire behaviour: round trips, forward compatibility, errors.

use patchbay_plugin_sdk::prelude::*;
use proptest::prelude::*;
use serde_json::json;

fn round_trip(msg: &Message) -> Message {
    let text = serde_json::to_string(msg).expect("serialise");
    serde_json::from_str(&text).expect("deserialise")
}

#[test]
fn every_kind_has_the_documented_wire_form() {
    let cases = vec![
        (Content::text("hi"), json!({"type":"text","text":"hi"})),
        (
            Content::Text {
                text: "*b*".into(),
                format: TextFormat::Markdown,
            },
            json!({"type":"text","text":"*b*","format":"markdown"}),
        ),
        (
            Content::Typing { active: true },
            json!({"type":"typing","active":true}),
        ),
        (
            Content::Postback {
                payload: "p1".into(),
                text: None,
            },
            json!({"type":"postback","payload":"p1"}),
        ),
        (
            Content::EndSession { reason: None },
            json!({"type":"end_session"}),
        ),
        (
            Content::Buttons {
                text: "Pick".into(),
                buttons: vec![
                    Button::postback("A", "a"),
                    Button::link("Docs", "https://d"),
                ],
            },
            json!({"type":"buttons","text":"Pick","buttons":[
                {"title":"A","action":{"type":"postback","payload":"a"}},
                {"title":"Docs","action":{"type":"link","url":"https://d"}}]}),
        ),
        (
            Content::Receipt(DeliveryReceipt::failed(
                "m1",
                ReasonCode::INVALID_DESTINATION,
                "gone",
            )),
            json!({"type":"receipt","message_id":"m1","status":"Failed",
                   "reasons":[{"code":530,"message":"gone"}]}),
        ),
    ];
    for (content, wire) in cases {
        assert_eq!(serde_json::to_value(&content).unwrap(), wire, "{content:?}");
        assert_eq!(serde_json::from_value::<Content>(wire).unwrap(), content);
    }
}

#[test]
fn unknown_kind_survives_a_round_trip() {
    let wire = json!({"conversation":{"id":"c"},
        "content":{"type":"hologram","frames":[1,2,3],"fps":24}});
    let msg: Message = serde_json::from_value(wire.clone()).unwrap();
    assert!(matches!(msg.content, Content::Unknown(_)));
    assert_eq!(msg.content.kind(), "hologram");
    assert!(msg.validate().is_ok());
    assert_eq!(serde_json::to_value(&msg).unwrap(), wire);
}

#[test]
fn unknown_fields_are_ignored() {
    let msg: Message = serde_json::from_value(json!({
        "conversation":{"id":"c","colour":"red"},
        "added_in_v9": true,
        "content":{"type":"text","text":"hi","sparkle":1}}))
    .unwrap();
    assert_eq!(msg.content, Content::text("hi"));
}

#[test]
fn malformed_known_kind_is_reported_by_validate() {
    let msg: Message = serde_json::from_value(json!({
        "conversation":{"id":"c"}, "content":{"type":"carousel","cards":"nope"}}))
    .unwrap();
    let err = msg.validate().unwrap_err();
    assert!(err.contains("carousel"), "{err}");
    let msg: Message = serde_json::from_value(json!({
        "conversation":{"id":"c"}, "content":{"kind":"text"}}))
    .unwrap();
    assert!(msg.validate().unwrap_err().contains("type"));
}

/// Found by fuzzing (abi_answers): a known kind with a field given twice
/// parsed as unknown content yet passed `validate`, and became a different
/// message after a JSON round trip.
#[test]
fn a_known_kind_with_a_field_given_twice_is_invalid() {
    let msg: Message = serde_json::from_slice(
        br#"{"conversation": {"id": "c"}, "content": {"type": "list_picker", "title": "Pick",
             "items": [{"payload": "P", "title": "One", "title": "Two"}]}}"#,
    )
    .unwrap();
    let err = msg.validate().unwrap_err();
    assert!(err.contains("list_picker"), "{err}");
}

#[test]
fn empty_conversation_is_invalid() {
    assert!(Message::new("", Content::text("x")).validate().is_err());
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 äöü€🙂]{0,20}"
}

fn button() -> impl Strategy<Value = Button> {
    prop_oneof![
        (text(), text()).prop_map(|(t, p)| Button::postback(t, p)),
        (text(), text()).prop_map(|(t, u)| Button::link(t, u)),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        text().prop_map(Content::text),
        text().prop_map(|t| Content::Text {
            text: t,
            format: TextFormat::Markdown
        }),
        any::<bool>().prop_map(|active| Content::Typing { active }),
        (text(), proptest::option::of(text()))
            .prop_map(|(payload, text)| Content::Postback { payload, text }),
        proptest::option::of(text()).prop_map(|reason| Content::EndSession { reason }),
        (text(), proptest::collection::vec(button(), 0..4))
            .prop_map(|(text, buttons)| Content::Buttons { text, buttons }),
        proptest::collection::vec((text(), proptest::option::of(text()), text()), 0..4).prop_map(
            |items| Content::ListPicker {
                title: "t".into(),
                items: items
                    .into_iter()
                    .map(|(title, subtitle, payload)| ListItem {
                        title,
                        subtitle,
                        image_url: None,
                        payload
                    })
                    .collect(),
            }
        ),
        proptest::collection::vec((text(), proptest::collection::vec(button(), 0..3)), 0..3)
            .prop_map(|cards| Content::Carousel {
                cards: cards
                    .into_iter()
                    .map(|(title, buttons)| Card {
                        title,
                        subtitle: None,
                        image_url: None,
                        buttons
                    })
                    .collect(),
            }),
        (text(), proptest::collection::vec((text(), text()), 0..4)).prop_map(|(text, r)| {
            Content::QuickReplies {
                text,
                replies: r
                    .into_iter()
                    .map(|(title, payload)| QuickReply { title, payload })
                    .collect(),
            }
        }),
        (text(), proptest::collection::vec(text(), 0..3)).prop_map(|(title, starts)| {
            Content::TimePicker {
                title,
                slots: starts
                    .into_iter()
                    .map(|start| TimeSlot {
                        start,
                        duration_minutes: Some(30),
                        payload: None,
                    })
                    .collect(),
                timezone: None,
            }
        }),
        (text(), text()).prop_map(|(url, title)| Content::RichLink {
            url,
            title,
            image_url: None,
            description: Some("d".into())
        }),
        (text(), proptest::option::of(0u64..10_000)).prop_map(|(url, size)| {
            Content::Attachments {
                attachments: vec![Attachment {
                    url,
                    filename: Some("a.pdf".into()),
                    content_type: None,
                    size,
                }],
                text: None,
            }
        }),
        (text(), 300u16..600).prop_map(|(id, code)| {
            Content::Receipt(DeliveryReceipt::failed(id, ReasonCode(code), "why"))
        }),
    ]
}

proptest! {
    #[test]
    fn message_round_trips(content in content(), conv in "[a-z0-9-]{1,12}", thread in proptest::option::of(text())) {
        let mut msg = Message::new(conv, content);
        msg.conversation.thread_id = thread;
        msg.sender = Some(Participant { id: "u1".into(), name: Some("Ann".into()) });
        msg.trace.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        msg.context.insert("plan".into(), json!("gold"));
        prop_assert_eq!(round_trip(&msg), msg.clone());
        prop_assert!(msg.validate().is_ok());
    }
}

/// Found by fuzzing the client channel: a large number in context data came
/// back from JSON as a different number, so the application would have seen
/// another value than the customer sent.
#[test]
fn numbers_survive_a_json_round_trip_exactly() {
    let json = r#"{"conversation":{"id":"c-1"},"content":{"type":"context_data","data":{"age":55555000000000000000000000000000000040992764608243447,"tiny":1.0000000000000002e-300}}}"#;
    let once: Message = serde_json::from_str(json).expect("parses");
    let twice: Message =
        serde_json::from_str(&serde_json::to_string(&once).expect("serialises")).expect("parses");
    assert_eq!(once, twice);
}
