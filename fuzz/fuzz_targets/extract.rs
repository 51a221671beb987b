//! The JSON body extractor and problem+json: any bytes give a typed value or a 400/422 problem
//! with a JSON pointer, never a panic or a 500.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_common::error::Error;
use switchyard_common::http::parse_json;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Shape {
    name: String,
    count: Option<u32>,
    tags: Option<Vec<String>>,
    nested: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

fuzz_target!(|data: &[u8]| {
    for result in [
        parse_json::<Shape>(data).map(|_| ()),
        parse_json::<serde_json::Value>(data).map(|_| ()),
    ] {
        if let Err(e) = result {
            let status = e.status_code().as_u16();
            assert!(matches!(status, 400 | 422), "{status} for {e:?}");
            if let Error::Validation(errors) = &e {
                assert!(
                    errors
                        .iter()
                        .all(|f| f.pointer.is_empty() || f.pointer.starts_with('/'))
                );
            }
            let body = serde_json::to_value(e.to_problem()).expect("a problem serialises");
            assert_eq!(body["status"], status);
        }
    }
});
