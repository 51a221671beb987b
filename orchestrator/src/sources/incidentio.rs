//! incident.io: Standard Webhooks signing and payload shape (see [`super::standard`]), with the
//! resource nested under a key named after the event type. Retries a 429.

use super::standard::{normalise_as, verify};
use super::{Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise: |d| normalise_as(Source::Incidentio, d),
    retries_429: true,
    platform_path: None,
};

#[cfg(test)]
mod tests {
    use crate::sources::fields::testing::{event, headers};
    use crate::sources::{Delivery, Source};

    #[test]
    fn nested_resource() {
        let body = br#"{"event_type":"public_alert.alert_created_v1","public_alert.alert_created_v1":{"id":"01ALERT","alert_source_id":"01SOURCE","title":"High error rate"}}"#;
        let h = headers(&[("webhook-id", "msg_1")]);
        let e = event(
            Source::Incidentio
                .normalise(&Delivery::new(&h, body))
                .unwrap(),
        );
        assert_eq!(e.delivery_id, "msg_1");
        assert_eq!(
            e.identifiers,
            vec![("incidentio_alert_source".into(), "01SOURCE".into())]
        );
        assert_eq!(e.correlation_key, "incidentio:01ALERT");
    }
}
