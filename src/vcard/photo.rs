//! The contact photo of a normalized card, as the providers that keep it outside the card
//! (Graph's `photo/$value`, EWS's contact-photo attachment, Google's `updateContactPhoto`)
//! need it: reading the first `PHOTO`, building the inline `PHOTO` entry every provider puts
//! on a card it reads, the size bound we accept, and the decision whether a card's photo
//! differs from what the provider holds. Pure.
//!
//! An inline photo is the shape [`crate::vcard::normalize`] gives a CardDAV card's photo:
//! `VCardValue::Binary(Data { content_type: Some(media type), .. })`, written as
//! `PHOTO:data:image/jpeg;base64,…` (RFC 6350 §6.2.4, RFC 2397), so that a photo reads the same
//! from every provider. A photo given by reference stays a `Text` URI.

use calcard::common::Data;
use calcard::vcard::{VCard, VCardEntry, VCardProperty, VCardValue};

/// The largest photo we accept, in bytes (decoded). A card carrying it inline as base64 stays
/// under the 1 MiB `max-resource-size` our CardDAV server announces
/// (`server::Config::max_resource_size`); Graph accepts up to 4 MB, EWS and Google less than
/// the server's own message limits, so every provider can take what we accept.
pub const MAX_PHOTO_BYTES: usize = 512 * 1024;

/// JPEG, RFC 2046 §4.2 / ISO 10918; what Outlook and Exchange store.
pub const MEDIA_JPEG: &str = "image/jpeg";
/// PNG, RFC 2083.
pub const MEDIA_PNG: &str = "image/png";
/// GIF.
pub const MEDIA_GIF: &str = "image/gif";

/// A card's photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Photo<'a> {
    /// Inline bytes with their media type.
    Inline {
        /// `image/jpeg`, …
        media_type: &'a str,
        /// The decoded image.
        bytes: &'a [u8],
    },
    /// A reference (`https:` URL, or a `data:` text the reader could not decode).
    Uri(&'a str),
}

/// The first `PHOTO` of `card`, if it has a value.
pub fn photo(card: &VCard) -> Option<Photo<'_>> {
    let entry = card.property(&VCardProperty::Photo)?;
    match entry.values.first()? {
        VCardValue::Binary(Data { content_type, data }) => Some(Photo::Inline {
            media_type: content_type
                .as_deref()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| sniff_media_type(data)),
            bytes: data,
        }),
        VCardValue::Text(t) if !t.trim().is_empty() => Some(Photo::Uri(t.trim())),
        _ => None,
    }
}

/// The media type of image bytes from their magic number; JPEG when unknown (what Outlook,
/// Exchange and Google serve).
pub fn sniff_media_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        MEDIA_PNG
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        MEDIA_GIF
    } else {
        MEDIA_JPEG
    }
}

/// Why a provider's photo was not put on the card.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    /// Larger than [`MAX_PHOTO_BYTES`].
    #[error(
        "the photo has {size} bytes, more than the {max} we accept; the card goes on without it"
    )]
    TooLarge {
        /// Its size.
        size: usize,
        /// [`MAX_PHOTO_BYTES`].
        max: usize,
    },
    /// No bytes.
    #[error("the photo is empty")]
    Empty,
}

/// The inline `PHOTO` entry for `bytes` served with `content_type` (its parameters dropped;
/// sniffed when missing or not an image type). Refuses more than [`MAX_PHOTO_BYTES`].
pub fn inline_entry(bytes: Vec<u8>, content_type: Option<&str>) -> Result<VCardEntry, PhotoError> {
    if bytes.is_empty() {
        return Err(PhotoError::Empty);
    }
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(PhotoError::TooLarge {
            size: bytes.len(),
            max: MAX_PHOTO_BYTES,
        });
    }
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| c.starts_with("image/") && c.len() > "image/".len())
        .unwrap_or_else(|| sniff_media_type(&bytes).to_string());
    Ok(
        VCardEntry::new(VCardProperty::Photo).with_value(VCardValue::Binary(Data {
            content_type: Some(media),
            data: bytes,
        })),
    )
}

/// `card` with its `PHOTO` entries replaced by `photo` (removed when `None`), the new one where
/// the first old one stood, else at the end.
pub fn with_photo(card: &VCard, photo: Option<VCardEntry>) -> VCard {
    let mut out = card.clone();
    let at = out
        .entries
        .iter()
        .position(|e| e.name == VCardProperty::Photo);
    out.entries.retain(|e| e.name != VCardProperty::Photo);
    if let Some(p) = photo {
        let at = at.unwrap_or(out.entries.len()).min(out.entries.len());
        out.entries.insert(at, p);
    }
    out
}

/// The first `PHOTO` entry of `card`, cloned.
pub fn photo_entry(card: &VCard) -> Option<VCardEntry> {
    card.property(&VCardProperty::Photo).cloned()
}

/// What a write must do to the provider's photo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhotoChange<'a> {
    /// The card's photo is what the provider holds: no photo request at all.
    Unchanged,
    /// Upload these bytes.
    Set {
        /// Media type.
        media_type: &'a str,
        /// The image.
        bytes: &'a [u8],
    },
    /// The card has no photo any more: remove the provider's.
    Remove,
    /// The card's photo differs but cannot be written; the provider keeps its own.
    Unwritable(String),
}

/// Compares the photo of `card` (to be written) with the one of `held` (the card as the
/// provider holds it, the engine's last remote card). Without `held` (nothing known about the
/// provider's copy) an inline photo is written and nothing is ever removed.
pub fn photo_change<'a>(held: Option<&VCard>, card: &'a VCard) -> PhotoChange<'a> {
    let new = photo(card);
    let old = match held {
        Some(h) => photo(h),
        None if new.is_none() => return PhotoChange::Unchanged,
        None => None,
    };
    if new == old {
        return PhotoChange::Unchanged;
    }
    match new {
        None => PhotoChange::Remove,
        Some(Photo::Uri(u)) => PhotoChange::Unwritable(format!(
            "the photo is a reference ({}), not image data; it cannot be uploaded",
            u.chars().take(64).collect::<String>()
        )),
        Some(Photo::Inline { bytes, .. }) if bytes.len() > MAX_PHOTO_BYTES => {
            PhotoChange::Unwritable(
                PhotoError::TooLarge {
                    size: bytes.len(),
                    max: MAX_PHOTO_BYTES,
                }
                .to_string(),
            )
        }
        Some(Photo::Inline { bytes: [], .. }) => {
            PhotoChange::Unwritable(PhotoError::Empty.to_string())
        }
        Some(Photo::Inline { media_type, bytes }) => PhotoChange::Set { media_type, bytes },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::vcard::read_normalized;

    fn card(extra: &str) -> VCard {
        let text = format!("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\n{extra}END:VCARD\r\n");
        read_normalized(&text).cards.into_iter().next().unwrap()
    }

    #[test]
    fn inline_entries_read_back_like_a_carddav_photo() {
        let e = inline_entry(b"\xff\xd8\xff\xe0abc".to_vec(), Some("image/jpeg; q=1")).unwrap();
        let c = with_photo(&card(""), Some(e));
        let text = crate::vcard::write_v4(&c);
        assert!(
            text.contains("PHOTO:data:image/jpeg;base64,/9j/4GFiYw=="),
            "{text}"
        );
        let again = card("PHOTO:data:image/jpeg;base64,/9j/4GFiYw==\r\n");
        assert_eq!(photo(&c), photo(&again));
    }

    #[test]
    fn media_types_are_sniffed_when_missing_or_not_images() {
        let e = inline_entry(
            b"\x89PNG\r\n\x1a\nxx".to_vec(),
            Some("application/octet-stream"),
        )
        .unwrap();
        assert!(matches!(
            photo(&with_photo(&card(""), Some(e))),
            Some(Photo::Inline {
                media_type: MEDIA_PNG,
                ..
            })
        ));
    }

    #[test]
    fn oversize_and_empty_photos_are_refused() {
        assert_eq!(
            inline_entry(vec![1; MAX_PHOTO_BYTES + 1], None),
            Err(PhotoError::TooLarge {
                size: MAX_PHOTO_BYTES + 1,
                max: MAX_PHOTO_BYTES
            })
        );
        assert_eq!(inline_entry(vec![], None), Err(PhotoError::Empty));
        assert!(inline_entry(vec![1; MAX_PHOTO_BYTES], None).is_ok());
    }

    #[test]
    fn changes_compare_with_what_the_provider_holds() {
        let a = card("PHOTO:data:image/jpeg;base64,/9j/4A==\r\n");
        let b = card("PHOTO:data:image/jpeg;base64,/9j/4Q==\r\n");
        let none = card("");
        let uri = card("PHOTO:https://lh3.example/x\r\n");
        assert_eq!(photo_change(Some(&a), &a), PhotoChange::Unchanged);
        assert!(matches!(
            photo_change(Some(&a), &b),
            PhotoChange::Set { .. }
        ));
        assert_eq!(photo_change(Some(&a), &none), PhotoChange::Remove);
        assert_eq!(photo_change(Some(&none), &none), PhotoChange::Unchanged);
        assert_eq!(photo_change(Some(&uri), &uri), PhotoChange::Unchanged);
        assert!(matches!(
            photo_change(Some(&a), &uri),
            PhotoChange::Unwritable(_)
        ));
        // Nothing known about the provider: write an inline photo, never remove.
        assert!(matches!(photo_change(None, &a), PhotoChange::Set { .. }));
        assert_eq!(photo_change(None, &none), PhotoChange::Unchanged);
    }

    #[test]
    fn with_photo_replaces_in_place() {
        let c = card("PHOTO:https://x/1\r\nNOTE:n\r\nPHOTO:https://x/2\r\n");
        let e = inline_entry(vec![1, 2, 3], Some(MEDIA_JPEG)).unwrap();
        let out = with_photo(&c, Some(e.clone()));
        let photos: Vec<_> = out
            .entries
            .iter()
            .filter(|x| x.name == VCardProperty::Photo)
            .collect();
        assert_eq!(photos, vec![&e]);
        assert_eq!(
            out.entries
                .iter()
                .position(|x| x.name == VCardProperty::Photo),
            c.entries
                .iter()
                .position(|x| x.name == VCardProperty::Photo)
        );
        assert!(photo(&with_photo(&c, None)).is_none());
    }
}
