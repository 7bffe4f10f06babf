//! Form bodies as providers post them: `application/x-www-form-urlencoded` or
//! `multipart/form-data` with files.
//!
//! `multipart/form-data` is MIME (RFC 7578), so `mail-parser` reads it once
//! given the `Content-Type` line that carries the boundary.

use mail_parser::{ContentType, MessageParser, MimeHeaders};

/// One form field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: String,
    pub value: Vec<u8>,
    /// Set for file fields.
    pub file: Option<FileMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileMeta {
    pub filename: String,
    pub content_type: Option<String>,
}

/// The fields of a form body, or `None` when it is neither kind of form.
pub(crate) fn parse(content_type: &str, body: &[u8]) -> Option<Vec<Field>> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => Some(
            form_urlencoded::parse(body)
                .map(|(name, value)| Field {
                    name: name.into_owned(),
                    value: value.into_owned().into_bytes(),
                    file: None,
                })
                .collect(),
        ),
        "multipart/form-data" => multipart(content_type, body),
        _ => None,
    }
}

fn multipart(content_type: &str, body: &[u8]) -> Option<Vec<Field>> {
    let mut raw = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    raw.extend_from_slice(body);
    let message = MessageParser::default().parse(&raw)?;
    let fields = message
        .parts
        .iter()
        .skip(1)
        .filter_map(|part| {
            let disposition = part.content_disposition()?;
            let name = disposition.attribute("name")?.to_string();
            let file = disposition.attribute("filename").map(|filename| FileMeta {
                filename: filename.to_string(),
                content_type: part.content_type().map(media_type),
            });
            Some(Field {
                name,
                value: part.contents().to_vec(),
                file,
            })
        })
        .collect();
    Some(fields)
}

/// `type/subtype` of a part's `Content-Type`, without parameters.
pub(crate) fn media_type(content_type: &ContentType<'_>) -> String {
    match content_type.subtype() {
        Some(sub) => format!("{}/{sub}", content_type.ctype()),
        None => content_type.ctype().to_string(),
    }
}

/// The first text field called `name`.
pub(crate) fn text<'a>(fields: &'a [Field], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|f| f.name == name && f.file.is_none())
        .and_then(|f| std::str::from_utf8(&f.value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_fields_and_files() {
        let body = b"--b1\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nHi there\r\n\
--b1\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"r.pdf\"\r\n\
Content-Type: application/pdf\r\n\r\n%PDF-1\r\n--b1--\r\n";
        let fields = parse("multipart/form-data; boundary=b1", body).expect("form");
        assert_eq!(text(&fields, "subject"), Some("Hi there"));
        assert_eq!(fields[1].value, b"%PDF-1");
        assert_eq!(
            fields[1].file,
            Some(FileMeta {
                filename: "r.pdf".into(),
                content_type: Some("application/pdf".into())
            })
        );
    }

    #[test]
    fn urlencoded_and_other_types() {
        let fields = parse("application/x-www-form-urlencoded", b"a=1&b=x+y").expect("form");
        assert_eq!(text(&fields, "b"), Some("x y"));
        assert!(parse("application/json", b"{}").is_none());
    }
}
