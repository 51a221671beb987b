//! Opsgenie (outgoing webhook integration): the generic alert shape of [`super::datadog`], with
//! the alert nested under `alert`. A shared secret as for Datadog. Never answered 429.

use super::datadog::normalise_alert;
use super::verify::configured_token;
use super::{Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify: configured_token,
    normalise: |d| normalise_alert(Source::Opsgenie, d),
    retries_429: false,
    platform_path: None,
};

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use crate::sources::fields::testing::event;
    use crate::sources::{Delivery, Source};

    #[test]
    fn nested_alert() {
        let body = br#"{"action":"Create","alert":{"alertId":"og-1","alias":"db-down","tags":["service:db"]}}"#;
        let h = HeaderMap::new();
        let e = event(
            Source::Opsgenie
                .normalise(&Delivery::new(&h, body))
                .unwrap(),
        );
        assert_eq!(
            (e.delivery_id.as_str(), e.correlation_key.as_str()),
            ("og-1", "opsgenie:db-down")
        );
        assert_eq!(
            e.identifiers,
            vec![("alert_label".into(), "service=db".into())]
        );
    }
}
