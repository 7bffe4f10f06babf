//! How many SMS segments a body costs.
//!
//! A body that fits the GSM 03.38 alphabet is sent 7 bits a character: 160
//! characters in one segment, 153 a segment when concatenated (the header takes
//! the rest); characters of the extension table (`€`, `[`, `{`…) take two
//! places. Anything else makes the whole body UCS-2: 70 in one segment, 67 a
//! segment when concatenated (a character outside the BMP takes two).

/// The encoding a body is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GSM 03.38, 7 bits a character.
    Gsm7,
    /// UCS-2, 16 bits a unit.
    Ucs2,
}

/// The encoding and the number of segments of `body`.
///
/// ```
/// use patchbay_adapter_sms::segments::{count, Encoding};
/// assert_eq!(count(&"a".repeat(160)), (Encoding::Gsm7, 1));
/// assert_eq!(count(&"a".repeat(161)), (Encoding::Gsm7, 2));
/// assert_eq!(count("héllo ✓"), (Encoding::Ucs2, 1));
/// ```
pub fn count(body: &str) -> (Encoding, usize) {
    let gsm_units: Option<usize> = body.chars().map(gsm_width).sum();
    let (encoding, units, single, multi) = match gsm_units {
        Some(units) => (Encoding::Gsm7, units, 160, 153),
        None => (Encoding::Ucs2, body.encode_utf16().count(), 70, 67),
    };
    let segments = match units {
        0 => 1,
        n if n <= single => 1,
        n => n.div_ceil(multi),
    };
    (encoding, segments)
}

/// Septets a character takes in GSM 03.38, or `None` if it has none.
fn gsm_width(c: char) -> Option<usize> {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "^{}\\[~]|€\u{000C}";
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_table() {
        let table: &[(&str, Encoding, usize)] = &[
            ("", Encoding::Gsm7, 1),
            (&"a".repeat(160), Encoding::Gsm7, 1),
            (&"a".repeat(161), Encoding::Gsm7, 2),
            (&"a".repeat(306), Encoding::Gsm7, 2),
            (&"a".repeat(307), Encoding::Gsm7, 3),
            // Extension characters count twice: 80 € fill one segment.
            (&"€".repeat(80), Encoding::Gsm7, 1),
            (&"€".repeat(81), Encoding::Gsm7, 2),
            (&"é".repeat(160), Encoding::Gsm7, 1),
            // One non-GSM character switches the whole body to UCS-2.
            (&format!("{}✓", "a".repeat(69)), Encoding::Ucs2, 1),
            (&format!("{}✓", "a".repeat(70)), Encoding::Ucs2, 2),
            (&"✓".repeat(134), Encoding::Ucs2, 2),
            (&"✓".repeat(135), Encoding::Ucs2, 3),
            // An emoji is two UTF-16 units.
            (&"😀".repeat(35), Encoding::Ucs2, 1),
            (&"😀".repeat(36), Encoding::Ucs2, 2),
        ];
        for (body, encoding, segments) in table {
            assert_eq!(count(body), (*encoding, *segments), "{body:?}");
        }
    }
}
