//! Grafana alerting (webhook contact point): the alert-group payload of
//! [`super::alertmanager`].
//!
//! Either an HMAC (`X-Grafana-Alerting-Signature: <hex>`, over `{timestamp}:{body}` when
//! `X-Grafana-Alerting-Signature-Timestamp` is sent, 5 minutes tolerance; over the body otherwise)
//! or, without that header, a shared secret as for Alertmanager. Never answered 429.

use super::alertmanager::normalise_group;
use super::verify::{
    VerifyError, any_secret, check_age, configured_token, header, hex_sig, optional_header,
};
use super::{Delivery, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise: |d| normalise_group(Source::Grafana, d),
    retries_429: false,
    platform_path: None,
};

const SIGNATURE: &str = "x-grafana-alerting-signature";
const TIMESTAMP: &str = "x-grafana-alerting-signature-timestamp";

fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    if !d.headers.contains_key(SIGNATURE) {
        return configured_token(d, secrets);
    }
    let sig = hex_sig(header(d.headers, SIGNATURE)?, SIGNATURE)?;
    match optional_header(d.headers, TIMESTAMP) {
        Some(ts) => {
            let ts_n: i64 = ts
                .trim()
                .parse()
                .map_err(|_| VerifyError::Malformed(TIMESTAMP))?;
            check_age(ts_n, d.now, 300)?;
            any_secret(secrets, &[sig], &[ts.trim().as_bytes(), b":", d.body])
        }
        None => any_secret(secrets, &[sig], &[d.body]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fields::testing::headers;
    use crate::sources::verify::sign::hmac_hex;

    #[test]
    fn signed_with_or_without_a_timestamp() {
        let s = b"sek".to_vec();
        let body = br#"{"status":"firing"}"#;
        let gts = hmac_hex(&s, &[b"1700000000", b":", body]);
        let h = headers(&[(SIGNATURE, &gts), (TIMESTAMP, "1700000000")]);
        let d = Delivery {
            now: 1_700_000_010,
            ..Delivery::new(&h, body)
        };
        assert_eq!(verify(&d, std::slice::from_ref(&s)), Ok(()));
        let late = Delivery {
            now: 1_700_000_400,
            ..d
        };
        assert_eq!(
            verify(&late, std::slice::from_ref(&s)),
            Err(VerifyError::StaleTimestamp(300))
        );
        let sig = hmac_hex(&s, &[body]);
        let h = headers(&[(SIGNATURE, &sig)]);
        assert_eq!(verify(&Delivery::new(&h, body), &[s]), Ok(()));
    }
}
