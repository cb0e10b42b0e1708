//! What an account may hold: the one definition of the rules, shared by auth (which parses what
//! clients send) and user (which refuses to store anything else, whoever asks).
//!
//! - **Email**: trimmed and lower-cased; ASCII only (RFC 5321). Internationalised addresses
//!   (RFC 6531) are refused: few mail systems deliver them, and letters that look alike across
//!   scripts would let two accounts look identical. An internationalised domain is accepted in
//!   its ASCII (`xn--`) form. At most 254 bytes, a local part of at most 64, a domain of
//!   letters, digits and hyphens in dot-separated labels.
//! - **Name**: trimmed and NFC-normalised (so one visible name is one stored string); 1 to
//!   [`MAX_NAME_CHARS`] characters; any script, but no control, format (zero-width, bidi
//!   overrides, BOM), private-use, surrogate, unassigned, or line/paragraph-separator character.
//! - **Password**: [`MIN_PASSWORD_CHARS`] characters to [`MAX_PASSWORD_BYTES`] bytes.
//! - **Stored hash**: a well-formed bcrypt hash ([`bcrypt_cost`]).

// Hand-written code: the lints the crate switches off for generated code apply here.
#![warn(clippy::all, unreachable_pub)]

use unicode_normalization::UnicodeNormalization as _;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// bcrypt reads at most 72 bytes; a longer password would be silently truncated, so two
/// passwords sharing their first 72 bytes would both log in. Longer ones are refused.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// NIST SP 800-63B's minimum for user-chosen secrets.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest display name, in characters (after normalisation).
pub const MAX_NAME_CHARS: usize = 100;
/// RFC 5321's limit on a forward path.
pub const MAX_EMAIL_BYTES: usize = 254;
/// RFC 5321's limit on a local part.
pub const MAX_EMAIL_LOCAL_BYTES: usize = 64;

/// Why a value breaks the rules: a stable reason (`ErrorInfo.reason`) and a message safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// e.g. `INVALID_EMAIL`.
    pub reason: &'static str,
    /// Human-readable; never echoes the value.
    pub message: String,
}

fn violation(reason: &'static str, message: impl Into<String>) -> Violation {
    Violation {
        reason,
        message: message.into(),
    }
}

/// The normalised form of `raw` as an email address (`INVALID_EMAIL`).
pub fn email(raw: &str) -> Result<String, Violation> {
    let invalid = || {
        violation(
            "INVALID_EMAIL",
            "email must be an ASCII address like name@example.com",
        )
    };
    let email = raw.trim().to_ascii_lowercase();
    if email.is_empty()
        || email.len() > MAX_EMAIL_BYTES
        || !email.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let domain_ok = domain.contains('.') && domain.split('.').all(label_ok);
    if local.is_empty() || local.len() > MAX_EMAIL_LOCAL_BYTES || !domain_ok {
        return Err(invalid());
    }
    Ok(email)
}

/// Characters no name may hold: invisible or reordering ones (control, format), ones with no
/// agreed meaning (private use, unassigned, lone surrogates), and line breaks.
fn forbidden_in_name(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 16.0): code
/// points that render as nothing. The Hangul fillers (U+115F, U+1160, U+3164, U+FFA0) are among
/// them. A general category alone does not catch them all: U+3164 is a letter (Lo).
const DEFAULT_IGNORABLE: [(u32, u32); 17] = [
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];

fn default_ignorable(c: char) -> bool {
    let c = u32::from(c);
    DEFAULT_IGNORABLE
        .iter()
        .any(|(first, last)| (*first..=*last).contains(&c))
}

/// Variation selectors: ignorable on their own, meaningful after a character they select a
/// form of (an emoji's colour presentation, U+FE0F).
fn variation_selector(c: char) -> bool {
    matches!(u32::from(c), 0xFE00..=0xFE0F | 0xE0100..=0xE01EF | 0x180B..=0x180D | 0x180F)
}

/// Whether `c` shows anything by itself: not an ignorable code point, not a mark (which only
/// decorates the character before it), not white space, not the blank Braille pattern (U+2800,
/// a symbol that draws no dots).
fn visible(c: char) -> bool {
    !default_ignorable(c)
        && !c.is_whitespace()
        && c != '\u{2800}'
        && !matches!(
            c.general_category(),
            GeneralCategory::NonspacingMark
                | GeneralCategory::SpacingMark
                | GeneralCategory::EnclosingMark
        )
}

/// Whether the name's characters are all ones a reader can see or that belong to one they can:
/// no ignorable code point except a variation selector after a visible character, no blank
/// filler anywhere (`Admin` padded with U+3164 is not `Admin`), and at least one visible
/// character (not only marks or white space).
fn visibly_written(name: &str) -> bool {
    let mut previous_visible = false;
    for c in name.chars() {
        let ignorable_here = c == '\u{2800}'
            || (default_ignorable(c) && !(variation_selector(c) && previous_visible));
        if ignorable_here {
            return false;
        }
        previous_visible = visible(c);
    }
    name.chars().any(visible)
}

/// The normalised form of `raw` as a display name (`INVALID_NAME`).
pub fn name(raw: &str) -> Result<String, Violation> {
    let name: String = raw.trim().nfc().collect();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(violation(
            "INVALID_NAME",
            format!("name must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(forbidden_in_name) || !visibly_written(&name) {
        return Err(violation(
            "INVALID_NAME",
            "name must not contain control, invisible, formatting or unassigned characters",
        ));
    }
    Ok(name)
}

/// Checks a new password's length (`PASSWORD_TOO_SHORT`, `PASSWORD_TOO_LONG`).
pub fn password(raw: &str) -> Result<(), Violation> {
    if raw.chars().count() < MIN_PASSWORD_CHARS {
        return Err(violation(
            "PASSWORD_TOO_SHORT",
            format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(violation(
            "PASSWORD_TOO_LONG",
            format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The cost of a well-formed bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, a two-digit cost
/// from 4 to 31, then 53 characters of bcrypt's base-64), or `None`.
pub fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = hash
        .strip_prefix("$2a$")
        .or_else(|| hash.strip_prefix("$2b$"))
        .or_else(|| hash.strip_prefix("$2x$"))
        .or_else(|| hash.strip_prefix("$2y$"))?;
    let (cost, digest) = rest.split_once('$')?;
    let digest_ok = digest.len() == 53
        && digest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    let cost: u32 = cost.parse().ok().filter(|_| cost.len() == 2)?;
    ((4..=31).contains(&cost) && digest_ok).then_some(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_ascii_trimmed_and_lower_cased() {
        assert_eq!(email("  Ada@Example.COM ").unwrap(), "ada@example.com");
        assert_eq!(
            email("a.b+tag@xn--bcher-kva.example").unwrap(),
            "a.b+tag@xn--bcher-kva.example"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "ada @example.com",
            "ada@exa_mple.com",
            "ada@-example.com",
            "ada@example..com",
            "ada\0@example.com",
            "ada\u{1b}[31m@example.com",
            "ada\r\n@example.com",
            "ada\u{200b}@example.com",
            "ada\u{202e}@example.com",
            "\u{feff}ada@example.com",
            "адa@example.com",    // Cyrillic look-alikes
            "ada@bücher.example", // a Unicode domain: send its xn-- form
            "josé@example.com",   // an internationalised local part
        ] {
            assert_eq!(email(bad).unwrap_err().reason, "INVALID_EMAIL", "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(email(&long_local).is_err());
    }

    #[test]
    fn names_are_nfc_of_any_script_without_invisible_characters() {
        assert_eq!(name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        // "é" as e + combining acute (NFD) is stored as the one precomposed character.
        assert_eq!(name("Jose\u{301}").unwrap(), "Jos\u{e9}");
        // A variation selector after a visible character selects its form: a red heart.
        for ok in [
            "Ада Лавлейс",
            "李白",
            "محمد",
            "O'Brien-Smith",
            "Zoë 🚀",
            "Zoë \u{2764}\u{fe0f}",
            "한글",
        ] {
            assert!(name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "   ",
            "Ada\0",
            "Ada\nLovelace",
            "Ada\u{1b}[2J",
            "Ada\u{200b}",         // zero-width space
            "Ada\u{202e}ecalevoL", // right-to-left override
            "\u{feff}Ada",         // byte order mark
            "Ada\u{2028}Lovelace", // a line separator (at either end, trimmed as space)
            "Ada\u{e000}",         // private use
            "Ada\u{378}",          // unassigned
            // Invisible by Unicode's properties, each accepted before (issue 20):
            "\u{3164}",      // Hangul filler (a letter by category)
            "\u{ffa0}",      // halfwidth Hangul filler
            "\u{115f}",      // Hangul choseong filler
            "\u{2800}",      // blank Braille pattern
            "\u{301}",       // a lone combining acute: only a mark
            "\u{fe0f}",      // a lone variation selector
            "Admin\u{3164}", // `Admin` padded to pass for another
            "\u{3164}Admin",
            "Ad\u{ad}min",     // a soft hyphen, invisible mid-word
            "\u{301}\u{301} ", // marks and space only
        ] {
            assert_eq!(name(bad).unwrap_err().reason, "INVALID_NAME", "{bad:?}");
        }
        assert!(name(&"x".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn passwords_are_8_characters_to_72_bytes() {
        assert_eq!(password("short").unwrap_err().reason, "PASSWORD_TOO_SHORT");
        assert!(password(&"a".repeat(72)).is_ok());
        assert_eq!(
            password(&"a".repeat(73)).unwrap_err().reason,
            "PASSWORD_TOO_LONG"
        );
        // 8 characters of 4 bytes: long enough, and short enough in bytes.
        assert!(password(&"🚀".repeat(8)).is_ok());
    }

    #[test]
    fn bcrypt_hashes_are_recognised_with_their_cost() {
        let hash = "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5KRzqzVuINNlrDjAwJfGLtbH6mh2cU.";
        assert_eq!(bcrypt_cost(hash), Some(12));
        assert_eq!(bcrypt_cost(&hash.replace("$12$", "$04$")), Some(4));
        for bad in [
            "",
            "plaintext",
            "$2b$12$truncated",
            &hash.replace("$12$", "$03$"),
            &hash.replace("$12$", "$1$"),
            &hash.replace("$2b$", "$3b$"),
            &format!("{hash}x"),
            &hash.replace('C', "!"),
        ] {
            assert_eq!(bcrypt_cost(bad), None, "{bad:?}");
        }
    }
}
