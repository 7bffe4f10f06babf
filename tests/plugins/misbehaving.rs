//! The broken libraries under `tests/misbehaving`: each is refused at load
//! with a message naming what mismatched, or fails one call in a contained
//! way while the same process keeps using other adapters.

use patchbay_host::plugins::contained::Contained;
use patchbay_host::plugins::loader::Answer;
use patchbay_host::plugins::{DynamicFactory, LoadError, open};
use patchbay_plugin_sdk::abi::{op, status};
use patchbay_plugin_sdk::prelude::*;
use patchbay_plugin_sdk::testkit::{Harness, request};
use serde_json::json;

use crate::plugin_libs;

const NOW: i64 = 1_763_719_200_000;

fn refused(name: &str) -> LoadError {
    open(&plugin_libs::path(&format!("misbehaving_{name}"))).expect_err("must be refused")
}

/// A broken library's adapter, behind the containment layer as `serve` runs it.
fn adapter(name: &str) -> Box<dyn ChannelAdapter> {
    let lib = open(&plugin_libs::path(&format!("misbehaving_{name}"))).expect("loads");
    let inner = DynamicFactory::new(lib)
        .expect("an adapter library")
        .create(&ChannelConfig {
            channel: name.into(),
            webhook_url: format!("https://gw.example/webhooks/{name}"),
            settings: json!({}),
            secrets: Default::default(),
        })
        .expect("instance");
    Box::new(Contained::new(name, inner))
}

/// A compiled-in adapter working beside the broken one.
fn healthy() -> Harness<patchbay_adapter_sms::Sms> {
    let config = ChannelConfig {
        channel: "sms".into(),
        webhook_url: "https://gw.example/webhooks/sms".into(),
        settings: json!({"account_sid": "AC1", "from": "+15005550006"}),
        secrets: [("auth_token".to_string(), Secret::new("t"))].into(),
    };
    Harness::new(
        patchbay_adapter_sms::Sms::new(&config).expect("config"),
        NOW,
    )
}

fn still_serving() {
    let h = healthy();
    let run = h.outbound(
        &Message::new("+14155550100", Content::text("hi")),
        vec![patchbay_plugin_sdk::testkit::json_response(
            201,
            &json!({"sid": "SM1"}),
        )],
    );
    assert!(run.outcome.is_ok(), "{:?}", run.outcome);
}

#[test]
fn wrong_magic_is_refused() {
    let err = refused("wrong_magic");
    assert!(
        err.message.contains("wrong magic 0x0bad0bad0bad0bad"),
        "{err}"
    );
    assert!(err.path.ends_with(&format!(
        "misbehaving_wrong_magic{}",
        std::env::consts::DLL_SUFFIX
    )));
}

#[test]
fn another_abi_major_is_refused_naming_both() {
    let err = refused("abi_v2");
    assert!(
        err.message
            .contains("built for ABI 2, this host speaks ABI 1"),
        "{err}"
    );
}

#[test]
fn a_short_descriptor_is_refused() {
    let err = refused("short_descriptor");
    assert!(
        err.message
            .contains("descriptor is 24 bytes, ABI 1 needs at least"),
        "{err}"
    );
}

#[test]
fn a_manifest_that_is_not_json_is_refused() {
    let err = refused("bad_manifest");
    assert!(err.message.contains("manifest is not valid JSON"), "{err}");
}

#[test]
fn a_panicking_plugin_is_contained_and_its_breaker_opens() {
    let adapter = adapter("panics");
    let req = request("POST", "https://gw.example/webhooks/panics", &[], b"{}");
    let now = Timestamp(NOW);
    for attempt in 1..=3 {
        let Step::Fail { error } = adapter.parse_inbound(&req, now) else {
            panic!("a panic must fail the call")
        };
        assert_eq!(error.class(), ErrorClass::Transient, "retried later");
        assert!(error.message().contains("the parser exploded"), "{error}");
        // The instance was recreated and still answers, until the third panic
        // opens the breaker.
        let verified = adapter.verify(&req, now, &Resources::none());
        assert_eq!(verified.is_ok(), attempt < 3, "{verified:?}");
        still_serving();
    }
    let Step::Fail { error } = adapter.render_outbound(&Message::new("c", Content::text("x")), now)
    else {
        panic!("the breaker must fail the call")
    };
    assert_eq!(error.class(), ErrorClass::Transient);
    assert!(error.message().contains("calls paused"), "{error}");
    still_serving();
}

#[test]
fn an_oversized_answer_is_refused_and_freed() {
    let adapter = adapter("oversized");
    let req = request("POST", "https://gw.example/webhooks/oversized", &[], b"{}");
    let Step::Fail { error } = adapter.parse_inbound(&req, Timestamp(NOW)) else {
        panic!("an oversized answer must fail the call")
    };
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(
        error
            .message()
            .contains("more than the 67108864-byte limit"),
        "{error}"
    );
    // Small answers from the same instance still work.
    let run = Harness::new(adapter, NOW).outbound(&Message::new("c", Content::text("x")), vec![]);
    assert!(run.outcome.is_ok());
    still_serving();
}

#[test]
fn unknown_operations_fail_clearly() {
    let adapter = adapter("unknown_op");
    let req = request("POST", "https://gw.example/webhooks/unknown-op", &[], b"{}");
    let now = Timestamp(NOW);
    let rejection = adapter
        .verify(&req, now, &Resources::none())
        .expect_err("cannot verify");
    assert_eq!(rejection.status, 503);
    assert!(
        rejection.message.contains("does not support operation 1"),
        "{rejection}"
    );
    let Step::Fail { error } = adapter.render_outbound(&Message::new("c", Content::text("x")), now)
    else {
        panic!("must fail")
    };
    assert!(
        error.message().contains("does not support operation 3"),
        "{error}"
    );
    // Optional operations degrade to their defaults.
    assert!(adapter.resources().is_empty());
    still_serving();
}

#[test]
fn an_sdk_library_answers_an_operation_it_does_not_know_with_unknown_op() {
    // What a newer host sees calling an older plugin.
    let lib = std::sync::Arc::new(open(&plugin_libs::path("patchbay_adapter_sms")).expect("loads"));
    let config = json!({"channel": "sms", "webhook_url": "https://gw.example/webhooks/sms",
                        "settings": {"account_sid": "AC1", "from": "+1"},
                        "secrets": {"auth_token": "t"}});
    let Ok(instance) = lib.create(config.to_string().as_bytes()) else {
        panic!("instance")
    };
    let envelope = json!({"wire": 1, "now": NOW}).to_string();
    match instance.call(200, envelope.as_bytes(), &[]) {
        Answer::Failed { status: code, .. } => assert_eq!(code, status::UNKNOWN_OP),
        Answer::Ok(_) => panic!("op 200 does not exist"),
    }
    match instance.call(op::VERIFY, b"{not json", &[]) {
        Answer::Failed { status: code, .. } => assert_eq!(code, status::BAD_ENVELOPE),
        Answer::Ok(_) => panic!("a broken envelope must be refused"),
    }
    // Dropping the instance destroys it.
}

#[test]
fn a_file_that_is_not_a_plugin_is_refused_with_a_clear_message() {
    let not_a_plugin = std::env::current_exe().expect("exe");
    let err = open(&not_a_plugin).expect_err("refused");
    assert!(
        err.message.contains("cannot be loaded") || err.message.contains("not a Patchbay adapter"),
        "{err}"
    );
    let missing = open(std::path::Path::new("/nonexistent/libnothing.so")).expect_err("missing");
    assert!(missing.to_string().contains("/nonexistent/libnothing.so"));
}

#[test]
fn an_instance_is_never_destroyed_while_a_call_is_inside_it() {
    // Threads keep calling into one instance (each `verify` takes about 2 ms
    // and checks that its instance is alive throughout) while another call
    // panics, which makes the host replace the instance, three times over.
    let adapter: std::sync::Arc<dyn ChannelAdapter> = adapter("panics").into();
    let req = request("POST", "https://gw.example/webhooks/panics", &[], b"{}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (adapter, req, stop) = (adapter.clone(), req.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut used_after_destroy = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Err(rejection) = adapter.verify(&req, Timestamp(NOW), &Resources::none())
                        && rejection.message.contains("after it was destroyed")
                    {
                        used_after_destroy += 1;
                    }
                }
                used_after_destroy
            })
        })
        .collect();
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let Step::Fail { .. } = adapter.parse_inbound(&req, Timestamp(NOW)) else {
            panic!("a panic must fail the call")
        };
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let used_after_destroy: usize = callers.into_iter().map(|c| c.join().expect("caller")).sum();
    assert_eq!(used_after_destroy, 0, "calls ran in destroyed instances");
}
