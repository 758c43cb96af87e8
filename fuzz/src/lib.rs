//! What the fuzz targets share: an independent oracle for the stored-file
//! pattern, and a structured generator of paths that are valid or nearly so,
//! so the fuzzer spends its time at the edges of the pattern rather than on
//! strings that fail at the first `/`.

use arbitrary::Arbitrary;

/// The extensions of the stored-file pattern.
pub const EXTENSIONS: [&str; 5] = ["jpg", "png", "gif", "webp", "bmp"];

/// Whether `s` is `{yyyy}/{M}/{d}/{uuid}.{ext}`, written from SPEC §2.1 and
/// without the service's code: four-digit year, month and day without
/// leading zeros and forming a real date, a lowercase hyphenated UUID, one of
/// the five extensions, nothing else.
pub fn is_stored_path(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    let [y, m, d, name] = parts.as_slice() else {
        return false;
    };
    let (Some(year), Some(month), Some(day)) = (plain(y, 4, 4), plain(m, 1, 2), plain(d, 1, 2))
    else {
        return false;
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return false;
    }
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    EXTENSIONS.contains(&ext) && is_lower_uuid(stem)
}

fn plain(s: &str, min: usize, max: usize) -> Option<u32> {
    let ok = (min..=max).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    ok.then(|| s.bytes().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn is_lower_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// A path built from parts that are each valid, nearly valid or raw.
#[derive(Debug, Arbitrary)]
pub struct PathInput {
    pub year: Component<u16>,
    pub month: Component<u8>,
    pub day: Component<u8>,
    pub id: Component<[u8; 16]>,
    pub ext: Component<u8>,
    /// Replaces the separators, if set.
    pub separator: Option<char>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

#[derive(Debug, Arbitrary)]
pub enum Component<T> {
    /// The value, rendered the way the pattern wants.
    Plain(T),
    /// The value, rendered in some other way (padding, case, sign).
    Odd(T, u8),
    /// Anything at all.
    Raw(String),
}

impl PathInput {
    pub fn render(&self) -> String {
        let number = |c: &Component<u32>, width: usize| match c {
            Component::Plain(n) => n.to_string(),
            Component::Odd(n, how) => match how % 4 {
                0 => format!("{n:0width$}"),
                1 => format!("+{n}"),
                2 => format!("0{n}"),
                _ => format!(" {n}"),
            },
            Component::Raw(s) => s.clone(),
        };
        let widen = |c: &Component<u16>| match c {
            Component::Plain(n) => Component::Plain(u32::from(*n)),
            Component::Odd(n, h) => Component::Odd(u32::from(*n), *h),
            Component::Raw(s) => Component::Raw(s.clone()),
        };
        let narrow = |c: &Component<u8>, modulus: u8| match c {
            Component::Plain(n) => Component::Plain(u32::from(n % modulus)),
            Component::Odd(n, h) => Component::Odd(u32::from(n % modulus), *h),
            Component::Raw(s) => Component::Raw(s.clone()),
        };
        let year = number(&widen(&self.year), 4);
        let month = number(&narrow(&self.month, 14), 2);
        let day = number(&narrow(&self.day, 33), 2);
        let id = match &self.id {
            Component::Plain(b) => uuid::Uuid::from_bytes(*b).hyphenated().to_string(),
            Component::Odd(b, how) => {
                let id = uuid::Uuid::from_bytes(*b);
                match how % 4 {
                    0 => id.hyphenated().to_string().to_uppercase(),
                    1 => id.simple().to_string(),
                    2 => id.braced().to_string(),
                    _ => id.urn().to_string(),
                }
            }
            Component::Raw(s) => s.clone(),
        };
        let ext = match &self.ext {
            Component::Plain(i) => EXTENSIONS[usize::from(*i) % EXTENSIONS.len()].to_owned(),
            Component::Odd(i, how) => {
                let ext = EXTENSIONS[usize::from(*i) % EXTENSIONS.len()];
                match how % 4 {
                    0 => ext.to_uppercase(),
                    1 => format!("{ext}.tmp"),
                    2 => format!("{ext}\0"),
                    _ => "jpeg".to_owned(),
                }
            }
            Component::Raw(s) => s.clone(),
        };
        let sep = self.separator.unwrap_or('/').to_string();
        format!(
            "{}{year}{sep}{month}{sep}{day}{sep}{id}.{ext}{}",
            self.prefix.as_deref().unwrap_or(""),
            self.suffix.as_deref().unwrap_or(""),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle() {
        assert!(is_stored_path(
            "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg"
        ));
        assert!(is_stored_path(
            "2024/2/29/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.webp"
        ));
        assert!(!is_stored_path(
            "2023/2/29/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg"
        ));
        assert!(!is_stored_path(
            "2014/04/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg"
        ));
    }
}
