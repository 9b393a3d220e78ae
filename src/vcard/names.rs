//! Protocol names the vCard layer matches or writes that calcard has no typed variant for:
//! legacy (2.1/3.0) properties and parameters, vendor extensions, and the TYPE words we rewrite.
//! Each carries the document that defines it.

/// `LABEL` property: RFC 2426 §3.2.2 (vCard 3.0), replaced by the ADR `LABEL` parameter in RFC 6350 §6.3.1.
pub const PROP_LABEL: &str = "LABEL";
/// `X-ANNIVERSARY`: Evolution / KAddressBook / Thunderbird extension, `ANNIVERSARY` in RFC 6350 §6.2.6.
pub const PROP_X_ANNIVERSARY: &str = "X-ANNIVERSARY";
/// `X-ABDATE`: Apple Address Book labelled date; labelled anniversary it is RFC 6350 §6.2.6 `ANNIVERSARY`.
pub const PROP_X_ABDATE: &str = "X-ABDATE";
/// `X-ABLabel`: Apple Address Book label of a property group (RFC 6350 §3.3 groups).
pub const PROP_X_ABLABEL: &str = "X-ABLABEL";
/// `X-ADDRESSBOOKSERVER-KIND`: Apple's vCard 3.0 group kind, RFC 6350 §6.1.4 `KIND` in 4.0.
pub const PROP_X_ADDRESSBOOKSERVER_KIND: &str = "X-ADDRESSBOOKSERVER-KIND";
/// `X-ADDRESSBOOKSERVER-MEMBER`: Apple's vCard 3.0 group member, RFC 6350 §6.6.5 `MEMBER` in 4.0.
pub const PROP_X_ADDRESSBOOKSERVER_MEMBER: &str = "X-ADDRESSBOOKSERVER-MEMBER";
/// `X-ABShowAs`: Apple's vCard 3.0 "show as company" flag; `COMPANY` is RFC 6350 §6.1.4 `KIND:org`.
pub const PROP_X_ABSHOWAS: &str = "X-ABShowAs";
/// The `X-ABShowAs` value that marks an organization card.
pub const ABSHOWAS_COMPANY: &str = "COMPANY";
/// `SORT-STRING`: RFC 2426 §3.6.5 (vCard 3.0), the RFC 6350 §5.9 `SORT-AS` parameter of N in 4.0.
pub const PROP_SORT_STRING: &str = "SORT-STRING";
/// Pre-RFC 4770 instant-messaging properties (Apple, Evolution, KDE) and the URI scheme of their
/// RFC 6350 §6.4.3 `IMPP` form, as sabre/vobject's `VCardConverter` maps them.
pub const LEGACY_IM_PROPS: &[(&str, &str)] = &[
    ("X-AIM", "aim"),
    ("X-ICQ", "icq"),
    ("X-JABBER", "xmpp"),
    ("X-MSN", "msnim"),
    ("X-YAHOO", "ymsgr"),
    ("X-SKYPE", "skype"),
    ("X-SKYPE-USERNAME", "skype"),
];

/// `ENCODING` parameter: RFC 2426 §5.8.4 / vCard 2.1 §2.1.3 (consumed by calcard).
pub const PARAM_ENCODING: &str = "ENCODING";
/// `CHARSET` parameter: vCard 2.1 §2.1.4 (consumed by calcard).
pub const PARAM_CHARSET: &str = "CHARSET";
/// vCard 2.1 §2.1.3 `QUOTED-PRINTABLE` encoding, also written bare (`NOTE;QUOTED-PRINTABLE:`).
pub const ENC_QUOTED_PRINTABLE: &str = "QUOTED-PRINTABLE";
/// Bare `BASE64` parameter: vCard 2.1 §2.1.3 shorthand for `ENCODING=BASE64` (consumed by calcard).
pub const ENC_BASE64_BARE: &str = "BASE64";
/// `X-APPLE-OMIT-YEAR`: Apple's marker for a BDAY stored with a placeholder year (1604).
pub const PARAM_X_APPLE_OMIT_YEAR: &str = "X-APPLE-OMIT-YEAR";
/// The placeholder year Apple writes with `X-APPLE-OMIT-YEAR`.
pub const APPLE_OMIT_YEAR: u16 = 1604;

/// `TYPE=pref`: RFC 2426 §3.3.1 preference flag, RFC 6350 §5.3 `PREF=1` in 4.0.
pub const TYPE_PREF: &str = "pref";
/// `TYPE=internet`: RFC 2426 §3.3.2 default EMAIL type, meaningless in RFC 6350 §6.4.2.
pub const TYPE_INTERNET: &str = "internet";
/// Apple's X-ABLabel value for an anniversary date.
pub const ABLABEL_ANNIVERSARY: &str = "_$!<Anniversary>!$_";

/// vCard 2.1 §2.4 / RFC 2426 §3 bare TYPE words that calcard does not type (kept as TYPE text).
pub const LEGACY_TYPE_WORDS: &[&str] = &[
    "dom",
    "intl",
    "postal",
    "parcel",
    "pref",
    "msg",
    "bbs",
    "modem",
    "car",
    "isdn",
    "pcs",
    "internet",
    "x400",
    "aol",
    "applelink",
    "attmail",
    "cis",
    "eworld",
    "ibmmail",
    "mcimail",
    "powershare",
    "prodigy",
    "tlx",
    "gif",
    "jpeg",
    "png",
    "pgp",
    "x509",
    "main",
    "iphone",
    "other",
];

/// Properties whose value is binary data in vCard 2.1/3.0 (RFC 2426 §3.1.4, §3.5.3, §3.6.6, §3.7.2).
pub const BINARY_PROPS: &[&str] = &["PHOTO", "LOGO", "SOUND", "KEY"];

/// Date-valued properties whose 3.0 `--MM-DD` form calcard misreads (RFC 6350 §6.2.5, §6.2.6, RFC 6474 §2.3).
pub const DATE_PROPS: &[&str] = &["BDAY", "ANNIVERSARY", "DEATHDATE"];

/// `data:` URI scheme, RFC 2397.
pub const DATA_URI_SCHEME: &str = "data:";
/// Media type of bytes of unknown kind, RFC 2046 §4.5.1.
pub const MEDIA_OCTET_STREAM: &str = "application/octet-stream";
/// `geo:` URI scheme, RFC 5870 (RFC 6350 §6.5.2 GEO value).
pub const GEO_URI_SCHEME: &str = "geo:";
/// Content line terminator, RFC 6350 §3.2.
pub const CRLF: &str = "\r\n";
/// Longest content line in octets, excluding the line break, RFC 6350 §3.2.
pub const FOLD_WIDTH: usize = 75;
