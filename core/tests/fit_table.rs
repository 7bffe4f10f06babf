//! Degradation tables: one row per content kind and channel restriction.
#![allow(clippy::type_complexity)] // row tuples are the point of a table test

use patchbay_core::fit::{Target, fit};
use patchbay_plugin_sdk::capabilities::*;
use patchbay_plugin_sdk::message::*;

fn sms() -> DirectionCapabilities {
    DirectionCapabilities::plain_text(1600)
}

fn run(content: &Content, caps: &DirectionCapabilities) -> patchbay_core::fit::Fitted {
    let messages = SystemMessages::default();
    fit(
        content,
        Target {
            capabilities: caps,
            system_messages: &messages,
            language: "en-US",
        },
    )
}

fn actions(f: &patchbay_core::fit::Fitted) -> Vec<(String, AdjustmentAction)> {
    f.adjustments
        .iter()
        .map(|a| (a.subject.clone(), a.action))
        .collect()
}

#[test]
fn rich_content_degrades_to_numbered_text() {
    let carousel = Content::Carousel {
        cards: vec![
            Card {
                title: "Basic".into(),
                subtitle: Some("$10".into()),
                image_url: Some("https://img/basic.png".into()),
                buttons: vec![
                    Button::postback("Choose Basic", "PLAN_BASIC"),
                    Button::link("Details", "https://p/basic"),
                ],
            },
            Card {
                title: "Pro".into(),
                subtitle: None,
                image_url: None,
                buttons: vec![Button::postback("Choose Pro", "PLAN_PRO")],
            },
        ],
    };
    let list = Content::ListPicker {
        title: "What do you need?".into(),
        items: vec![
            ListItem {
                title: "Billing".into(),
                subtitle: Some("invoices".into()),
                image_url: None,
                payload: "BILL".into(),
            },
            ListItem {
                title: "Support".into(),
                subtitle: None,
                image_url: None,
                payload: "SUP".into(),
            },
        ],
    };
    let buttons = Content::Buttons {
        text: "Proceed?".into(),
        buttons: vec![
            Button::postback("Yes", "Y"),
            Button::link("Terms", "https://t"),
        ],
    };
    let times = Content::TimePicker {
        title: "Pick a time".into(),
        slots: vec![
            TimeSlot {
                start: "2026-11-21T10:00:00Z".into(),
                duration_minutes: Some(30),
                payload: None,
            },
            TimeSlot {
                start: "2026-11-21T11:00:00Z".into(),
                duration_minutes: None,
                payload: Some("late".into()),
            },
        ],
        timezone: Some("UTC".into()),
    };
    let link = Content::RichLink {
        url: "https://x".into(),
        title: "X".into(),
        image_url: None,
        description: Some("about x".into()),
    };
    // (content, expected text, expected (reply, payload) pairs)
    let table: Vec<(Content, &str, Vec<(&str, &str)>)> = vec![
        (
            carousel,
            "Basic - $10\nhttps://img/basic.png\n1. Choose Basic\nDetails: https://p/basic\n\nPro\n2. Choose Pro",
            vec![("1", "PLAN_BASIC"), ("2", "PLAN_PRO")],
        ),
        (
            list,
            "What do you need?\n1. Billing - invoices\n2. Support",
            vec![("2", "SUP"), ("billing", "BILL")],
        ),
        (
            buttons,
            "Proceed?\n1. Yes\nTerms: https://t",
            vec![("1", "Y")],
        ),
        (
            times,
            "Pick a time (UTC)\n1. 2026-11-21T10:00:00Z (30 min)\n2. 2026-11-21T11:00:00Z",
            vec![("1", "2026-11-21T10:00:00Z"), ("2", "late")],
        ),
        (link, "X\nhttps://x\nabout x", vec![]),
    ];
    for (content, text, replies) in table {
        let fitted = run(&content, &sms());
        assert_eq!(
            fitted.parts,
            vec![Content::text(text)],
            "{}",
            content.kind()
        );
        assert_eq!(
            actions(&fitted),
            vec![(content.kind().to_string(), AdjustmentAction::Converted)]
        );
        assert!(fitted.refusal.is_none());
        for (reply, payload) in replies {
            let menu = fitted.menu.as_ref().expect("menu");
            assert_eq!(
                menu.resolve(reply).map(|o| o.payload.as_str()),
                Some(payload),
                "{reply}"
            );
        }
    }
}

#[test]
fn native_rich_content_passes_unchanged() {
    let caps = DirectionCapabilities::everything();
    for content in [
        Content::Carousel {
            cards: vec![Card {
                title: "a".into(),
                ..Default::default()
            }],
        },
        Content::Typing { active: true },
        Content::Text {
            text: "**b**".into(),
            format: TextFormat::Markdown,
        },
        Content::EndSession { reason: None },
    ] {
        let fitted = run(&content, &caps);
        assert_eq!(fitted.parts, vec![content.clone()]);
        assert!(fitted.adjustments.is_empty() && fitted.menu.is_none());
    }
}

#[test]
fn typing_is_dropped_where_unsupported() {
    let fitted = run(&Content::Typing { active: true }, &sms());
    assert!(fitted.parts.is_empty());
    assert_eq!(
        actions(&fitted),
        vec![("typing".into(), AdjustmentAction::Dropped)]
    );
}

#[test]
fn long_text_is_split_at_words() {
    let caps = DirectionCapabilities::plain_text(12);
    let fitted = run(&Content::text("one two three four five"), &caps);
    assert_eq!(
        fitted.parts,
        vec![
            Content::text("one two"),
            Content::text("three four"),
            Content::text("five")
        ]
    );
    assert_eq!(
        actions(&fitted),
        vec![("text".into(), AdjustmentAction::Split)]
    );
}

#[test]
fn markdown_is_flattened_without_rich_text() {
    let fitted = run(
        &Content::Text {
            text: "**Hi** [a](https://a)".into(),
            format: TextFormat::Markdown,
        },
        &sms(),
    );
    assert_eq!(fitted.parts, vec![Content::text("Hi a (https://a)")]);
}

fn with_attachments(policy: AttachmentPolicy) -> DirectionCapabilities {
    DirectionCapabilities::plain_text(1000)
        .with_features([Feature::Attachments])
        .with_attachments(policy)
}

fn file(name: &str, size: u64) -> Content {
    Content::Attachments {
        attachments: vec![Attachment {
            url: format!("https://files/{name}"),
            filename: Some(name.into()),
            content_type: None,
            size: Some(size),
        }],
        text: None,
    }
}

#[test]
fn attachment_policy_table() {
    let block_exe = with_attachments(
        AttachmentPolicy::any()
            .blocking(["exe"])
            .with_max_size(1024 * 1024),
    );
    let allow_pdf = with_attachments(AttachmentPolicy::any().allowing(["pdf"]));
    // (caps, content, refused with)
    let table: Vec<(&DirectionCapabilities, Content, Option<(ReasonCode, &str)>)> = vec![
        (
            &block_exe,
            file("setup.exe", 10),
            Some((
                ReasonCode::NOT_ALLOWED,
                "Attachment file type 'exe' is not allowed.",
            )),
        ),
        (
            &block_exe,
            file("big.pdf", 2 * 1024 * 1024),
            Some((
                ReasonCode::NOT_ALLOWED,
                "File could not be sent. It exceeded the maximum limit of 1 MB",
            )),
        ),
        (&block_exe, file("ok.pdf", 10), None),
        (
            &allow_pdf,
            file("a.png", 10),
            Some((
                ReasonCode::NOT_ALLOWED,
                "Attachment file type 'png' is not allowed.",
            )),
        ),
        (&allow_pdf, file("a.PDF", 10), None),
    ];
    for (caps, content, refused) in table {
        let fitted = run(&content, caps);
        match refused {
            Some((code, message)) => {
                let r = fitted.refusal.expect("refused");
                assert_eq!((r.reason, r.message.as_str()), (code, message));
                assert!(fitted.parts.is_empty());
                assert_eq!(fitted.adjustments[0].action, AdjustmentAction::Refused);
            }
            None => assert_eq!(fitted.parts, vec![content]),
        }
    }
}

#[test]
fn localised_system_message_is_used() {
    let caps = with_attachments(AttachmentPolicy::any().blocking(["exe"]));
    let mut messages = SystemMessages::default();
    messages.0.insert(
        "de-DE".into(),
        [(
            SystemMessageKey::BlockedFileExtension,
            "Dateityp '{0}' ist nicht erlaubt.".to_string(),
        )]
        .into(),
    );
    let fitted = fit(
        &file("x.exe", 1),
        Target {
            capabilities: &caps,
            system_messages: &messages,
            language: "de",
        },
    );
    assert_eq!(
        fitted.refusal.unwrap().message,
        "Dateityp 'exe' ist nicht erlaubt."
    );
}

#[test]
fn attachments_without_the_feature_become_links() {
    let content = Content::Attachments {
        attachments: vec![Attachment {
            url: "https://f/a.pdf".into(),
            filename: Some("a.pdf".into()),
            ..Default::default()
        }],
        text: Some("Your invoice".into()),
    };
    let fitted = run(&content, &sms());
    assert_eq!(
        fitted.parts,
        vec![Content::text("Your invoice\na.pdf: https://f/a.pdf")]
    );
}

#[test]
fn unknown_and_receipt_outbound_are_refused_as_unsupported() {
    for content in [
        Content::Unknown(serde_json::json!({"type":"hologram"})),
        Content::Receipt(DeliveryReceipt::delivered("x")),
    ] {
        let fitted = run(&content, &DirectionCapabilities::everything());
        assert_eq!(fitted.refusal.unwrap().reason, ReasonCode::UNSUPPORTED);
    }
}

#[test]
fn degraded_menu_longer_than_limit_is_split_and_still_maps() {
    let caps = DirectionCapabilities::plain_text(20);
    let list = Content::ListPicker {
        title: "Choose one".into(),
        items: (1..=4)
            .map(|i| ListItem {
                title: format!("Option {i}"),
                payload: format!("P{i}"),
                ..Default::default()
            })
            .collect(),
    };
    let fitted = run(&list, &caps);
    assert!(fitted.parts.len() > 1);
    assert_eq!(fitted.menu.unwrap().resolve("4").unwrap().payload, "P4");
}

fn limited(limits: RichLimits) -> DirectionCapabilities {
    DirectionCapabilities::everything().with_limits(limits)
}

#[test]
fn rich_limits_degrade_or_shorten() {
    let caps = limited(
        RichLimits::none()
            .with_max_buttons(2)
            .with_max_choices(2)
            .with_max_cards(1)
            .with_max_title_length(5),
    );
    let three_buttons = Content::Buttons {
        text: "Pick".into(),
        buttons: vec![
            Button::postback("A", "a"),
            Button::postback("B", "b"),
            Button::postback("C", "c"),
        ],
    };
    let fitted = run(&three_buttons, &caps);
    assert_eq!(fitted.parts, vec![Content::text("Pick\n1. A\n2. B\n3. C")]);
    assert_eq!(
        fitted.menu.expect("menu").resolve("3").expect("3").payload,
        "c"
    );

    let long_titles = Content::QuickReplies {
        text: "Sure?".into(),
        replies: vec![QuickReply {
            title: "Absolutely".into(),
            payload: "Y".into(),
        }],
    };
    let fitted = run(&long_titles, &caps);
    let Content::QuickReplies { replies, .. } = &fitted.parts[0] else {
        panic!("{:?}", fitted.parts)
    };
    assert_eq!(replies[0].title, "Abso…");
    assert_eq!(replies[0].payload, "Y");
    assert_eq!(fitted.adjustments[0].action, AdjustmentAction::Truncated);

    let two_cards = Content::Carousel {
        cards: vec![
            Card {
                title: "One".into(),
                subtitle: None,
                image_url: None,
                buttons: vec![],
            },
            Card {
                title: "Two".into(),
                subtitle: None,
                image_url: None,
                buttons: vec![],
            },
        ],
    };
    assert_eq!(
        run(&two_cards, &caps).parts,
        vec![Content::text("One\n\nTwo")]
    );
    // Within every limit: untouched.
    let fine = Content::QuickReplies {
        text: "Ok?".into(),
        replies: vec![QuickReply {
            title: "Yes".into(),
            payload: "Y".into(),
        }],
    };
    let fitted = run(&fine, &caps);
    assert_eq!(fitted.parts, vec![fine]);
    assert!(fitted.adjustments.is_empty());
}

#[test]
fn native_quick_replies_map_their_labels_back_but_not_numbers() {
    let caps = DirectionCapabilities::plain_text(1000).with_rich_types([RichType::QuickReplies]);
    let content = Content::QuickReplies {
        text: "Helpful?".into(),
        replies: vec![
            QuickReply {
                title: "Yes".into(),
                payload: "Y".into(),
            },
            QuickReply {
                title: "No".into(),
                payload: "N".into(),
            },
        ],
    };
    let fitted = run(&content, &caps);
    assert_eq!(fitted.parts, vec![content]);
    let menu = fitted.menu.expect("a label menu");
    assert_eq!(menu.resolve("no").map(|o| o.payload.as_str()), Some("N"));
    assert!(menu.resolve("2").is_none(), "no numbers were shown");
}
