//! The benchmark corpus shared by every bench: realistic vCard 3.0 cards in the shape Apple
//! Contacts exports (grouped EMAIL/ADR with `X-ABLabel`, `TYPE=pref`, `X-APPLE-OMIT-YEAR`
//! birthday, escaped NOTE), with non-ASCII names drawn from several scripts and every tenth card
//! carrying a 4 KiB `ENCODING=b` JPEG PHOTO. Card `i` is the same bytes in every bench, so the
//! client pull, the server sync and the normalize benches measure the same data.
//!
//! Include it with `#[path = "common/corpus.rs"] mod corpus;`.
#![allow(dead_code)]

use base64::Engine as _;

/// Given names: Latin with diacritics, Greek, Cyrillic, CJK, Arabic, Hebrew, Devanagari.
const GIVEN: [&str; 16] = [
    "Zoë",
    "François",
    "Jürgen",
    "Søren",
    "Łukasz",
    "Ángel",
    "Björk",
    "Çağlar",
    "Δημήτρης",
    "Мария",
    "美咲",
    "Хосе",
    "محمد",
    "נועה",
    "अनन्या",
    "Renée",
];
/// Family names, likewise.
const FAMILY: [&str; 16] = [
    "Müller",
    "Dvořák",
    "Nuñez",
    "Ødegaard",
    "Żółkiewski",
    "Ferreira-Gonçalves",
    "O'Brien",
    "Ñúñez",
    "Παπαδόπουλος",
    "Смирнова",
    "山田",
    "Öztürk",
    "الحسيني",
    "כהן",
    "शर्मा",
    "Lefèvre",
];
/// Companies.
const ORG: [&str; 8] = [
    "Bäckerei Groß GmbH",
    "Société Générale d'Études",
    "Nordisk Fjørd AS",
    "Łódź Logistics Sp. z o.o.",
    "株式会社サンプル",
    "ООО Ромашка",
    "Example Corp",
    "Café Olé S.L.",
];

/// The 4 KiB photo every tenth card carries, base64 (a JPEG header, then filler bytes).
pub fn photo_b64() -> String {
    let mut bytes: Vec<u8> = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
    ];
    bytes.extend((bytes.len() as u32..4096).map(|i| (i * 31 % 251) as u8));
    base64::prelude::BASE64_STANDARD.encode(bytes)
}

/// The UID of card `i` (Apple's shape: an uppercase UUID).
pub fn uid(i: usize) -> String {
    format!("{i:08X}-B2DE-4261-BA99-DE1D1DB52FBE")
}

/// The resource name of card `i` in a collection.
pub fn file_name(i: usize) -> String {
    format!("{}.vcf", uid(i))
}

/// Card `i` as vCard 3.0 (CRLF lines). `photo` is [`photo_b64`], passed in so it is built once.
pub fn card(i: usize, photo: &str) -> String {
    let given = GIVEN[i % GIVEN.len()];
    let family = FAMILY[(i / GIVEN.len()) % FAMILY.len()];
    let org = ORG[i % ORG.len()];
    let mut out = String::with_capacity(if i % 10 == 0 { 6_500 } else { 900 });
    out.push_str("BEGIN:VCARD\r\nVERSION:3.0\r\nPRODID:-//Apple Inc.//macOS 14.2//EN\r\n");
    out.push_str(&format!(
        "N:{family};{given};;;\r\nFN:{given} {family} {i}\r\nORG:{org};Vertrieb & Ventes\r\nTITLE:Ingénieure\r\n"
    ));
    out.push_str(&format!(
        "item1.EMAIL;type=INTERNET;type=HOME;type=pref:person{i}@example.com\r\nitem1.X-ABLabel:_$!<Other>!$_\r\n"
    ));
    out.push_str(&format!(
        "TEL;type=CELL;type=VOICE;type=pref:+49 151 {i:07}\r\nTEL;type=WORK;type=VOICE:+33 1 42 {:02} {:02} {:02}\r\n",
        i % 100,
        (i / 100) % 100,
        (i / 10_000) % 100
    ));
    out.push_str(&format!(
        "item2.ADR;type=HOME;type=pref:;;{i} Königstraße;Zürich;ZH;8001;Schweiz\r\nitem2.X-ABADR:ch\r\n"
    ));
    out.push_str("BDAY;X-APPLE-OMIT-YEAR=1604:1604-04-15\r\n");
    out.push_str("NOTE:Rencontré à la conférence\\, a aimé l'exposé.\\nÀ relancer.\r\n");
    if i % 10 == 0 {
        out.push_str("PHOTO;ENCODING=b;TYPE=JPEG:");
        out.push_str(photo);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "REV:2024-01-15T10:20:30Z\r\nUID:{}\r\nEND:VCARD\r\n",
        uid(i)
    ));
    out
}

/// Cards `0..n`.
pub fn cards(n: usize) -> Vec<String> {
    let photo = photo_b64();
    (0..n).map(|i| card(i, &photo)).collect()
}
