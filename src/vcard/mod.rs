//! The vCard layer: reading 2.1/3.0/4.0, normalizing to vCard 4, writing 4.0 and 3.0,
//! fingerprints and jCard. Pure: no tokio, no I/O. Built on calcard's parser and types; we wrap
//! nothing calcard already models, and fix only what it gets wrong on real exporter output.
//!
//! # Pipeline
//! [`read`] / [`read_bytes`] → calcard [`VCard`]s plus [`Diagnostic`]s → [`normalize`] →
//! [`write_v4`] / [`write_v3`] / [`to_jcard`] / [`fingerprint`]. [`read_normalized`] does the first
//! two steps.
//!
//! # The normalized shape (what the mapping layer can rely on)
//! - The first entry is `VERSION` with `Text("4.0")`; no `BEGIN`/`END` entries. Other entries keep
//!   their input order, group names and (for unknown `Other` properties) their name as written.
//! - `FN` is always present (made from N, ORG or EMAIL when missing).
//! - Parameters come in this order: all `TYPE` params, then at most one `PREF`, then the rest in
//!   input order. `TYPE` values are one per [`VCardParameter`]: a known type is
//!   `VCardParameterValue::Type(VCardType::Work)` etc.; any other is `Text` in lower case
//!   (`"iphone"`, `"main"`, `"x-custom"`). `pref` never appears as a TYPE, `internet` never on EMAIL.
//! - `PREF` is `VCardParameterName::Pref` with `VCardParameterValue::Integer(1..=100)`.
//! - `PHOTO`/`LOGO`/`SOUND`/`KEY` inline data is `VCardValue::Binary(Data { content_type:
//!   Some(media type), .. })`, written as `data:<type>;base64,<data>`; legacy `TYPE=JPEG` is
//!   gone. A URI stays `Text` (with `MEDIATYPE` when the 3.0 card named one). No `VALUE=` that
//!   repeats the property's default type, no `ENCODING`/`CHARSET`.
//! - `BDAY`/`ANNIVERSARY`/`DEATHDATE` are `PartialDateTime` (year `None` when the card had none,
//!   including Apple's `1604` + `X-APPLE-OMIT-YEAR`), or `Text` when they were not dates.
//! - `X-ANNIVERSARY` and Apple's anniversary-labelled `X-ABDATE` are `ANNIVERSARY`;
//!   `X-ADDRESSBOOKSERVER-KIND` is `KIND` (`VCardValue::Kind`), `X-ADDRESSBOOKSERVER-MEMBER` is
//!   `MEMBER`; 3.0 `LABEL` is the `VCardParameterName::Label` parameter of its ADR; 3.0 `GEO:lat;lon`
//!   is `geo:lat,lon`.
//! - Parameter text is RFC 6868-decoded (real newlines and quotes); text values use `\n` line ends.
//! - `UID` is kept exactly as written.
//! - An unknown property (`VCardProperty::Other`) keeps its value exactly as written: one `Text`
//!   holding the raw value text with its escapes (`a\;b` stays `a\;b`), written back byte for
//!   byte. [`unescape_raw`] gives its meaning; [`escape_raw`] makes raw text from plain text.
//! - Legacy IM properties (`X-AIM`, `X-JABBER`, ...) are `IMPP` URIs (`aim:handle`), Apple's
//!   `X-ABShowAs:COMPANY` is `KIND:org`, and 3.0 `SORT-STRING` is the `SORT-AS` parameter of N.
//! - BDAY/ANNIVERSARY in extended format (`1604-11-01`, `--11-01`) keep year, month and day.

pub mod dates;
pub mod fingerprint;
pub mod jcard;
pub mod names;
pub mod normalize;
pub mod photo;
pub mod read;
pub mod write;

pub use calcard::common::{Data, PartialDateTime};
pub use calcard::vcard::{
    VCard, VCardEntry, VCardKind, VCardParameter, VCardParameterName, VCardParameterValue,
    VCardProperty, VCardType, VCardValue, VCardValueType, VCardVersion,
};
pub use fingerprint::{fingerprint, Fingerprint};
pub use jcard::to_jcard;
pub use normalize::{normalize, normalize_owned};
pub use read::{
    escape_raw, read, read_bytes, read_into, unescape_raw, Diagnostic, ReadOutput, ReadSink,
};
pub use write::{write_v3, write_v4};

/// [`read`] then [`normalize`] each card.
pub fn read_normalized(input: &str) -> ReadOutput {
    let mut out = read(input);
    out.cards = out.cards.into_iter().map(normalize_owned).collect();
    out
}

/// [`read_into`] then [`normalize`]: each card is handed to `on_card` normalized as soon as it
/// is read, and each diagnostic to `on_diagnostic`; nothing is kept (for writing a large input
/// out card by card).
pub fn for_each_normalized(
    input: &str,
    on_card: impl FnMut(VCard),
    on_diagnostic: impl FnMut(Diagnostic),
) {
    struct Sink<C, D>(C, D);
    impl<C: FnMut(VCard), D: FnMut(Diagnostic)> ReadSink for Sink<C, D> {
        fn card(&mut self, card: VCard) {
            (self.0)(normalize_owned(card));
        }
        fn diagnostic(&mut self, diagnostic: Diagnostic) {
            (self.1)(diagnostic);
        }
    }
    read_into(input, &mut Sink(on_card, on_diagnostic));
}

/// [`read_bytes`] then [`normalize`] each card.
pub fn read_bytes_normalized(input: &[u8]) -> ReadOutput {
    let mut out = read_bytes(input);
    out.cards = out.cards.into_iter().map(normalize_owned).collect();
    out
}

/// The card's UID (RFC 6350 §6.7.6), exactly as written.
pub fn uid(card: &VCard) -> Option<&str> {
    card.uid()
}

/// The card's VERSION (RFC 6350 §6.7.9), if it has a known one.
pub fn version(card: &VCard) -> Option<VCardVersion> {
    card.version()
}
