//! The one declaration of every setting: `settings_table!` turns a list of
//! keys (name, type, default, meaning, and a web.config name or a flag where
//! there is one) into the app.toml table that serde reads, the overlay of one
//! layer on another, the text parser that the environment and web.config
//! layers use, and the `Setting` rows that the configuration reference
//! (docs/configuration.md) is checked against. Adding a key is one entry.

use std::path::PathBuf;

use super::auth::OrderedSecrets;

/// The prefix of every environment variable; the rest is the key in upper
/// case with `_` for `.` (`MULTISERVER_UPLOAD_IMAGES_MAX_SIDE`).
pub(crate) const ENV_PREFIX: &str = "MULTISERVER_UPLOAD_";

/// What a key means when no layer sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unset {
    /// As if this text were given: the lowest layer of every load.
    Value(&'static str),
    /// Worked out from other settings, or nothing at all, as described.
    Described(&'static str),
    /// The service does not start without it.
    Required,
}

/// One key as the reference shows it.
#[derive(Debug)]
pub(crate) struct Setting {
    /// Dotted, as in error messages: `images.max_side`.
    pub key: &'static str,
    /// `FromText::TYPE` of its type: `integer`, `list of strings`, …
    pub ty: &'static str,
    pub default: Unset,
    /// Whether `MULTISERVER_UPLOAD_…` sets it; tables that describe a
    /// deployment (`[storage]`, `[cors]`) are read from app.toml only.
    pub env: bool,
    /// The original web.config `<appSettings>` key that fills it.
    pub web: Option<&'static str>,
    /// The command-line flag that overrides it.
    pub flag: Option<&'static str>,
    /// Its doc comment: the meaning column of the reference.
    pub doc: &'static str,
}

impl Setting {
    pub(crate) fn env_name(&self) -> Option<String> {
        self.env
            .then(|| format!("{ENV_PREFIX}{}", self.key.replace('.', "_").to_uppercase()))
    }
}

/// The settings tables of docs/configuration.md, one per app.toml table,
/// as `multiserver-upload config-reference` prints them.
pub(crate) fn reference(settings: &[&Setting]) -> String {
    let mut out = String::new();
    let mut table = None;
    for s in settings {
        let prefix = s.key.rsplit_once('.').map(|(t, _)| t);
        if table != Some(prefix) {
            table = Some(prefix);
            let title = prefix.map_or("Top level".to_owned(), |t| format!("`[{t}]`"));
            out.push_str(&format!(
                "\n### {title}\n\n\
                 | key | type | default | environment | web.config | flag | meaning |\n\
                 | --- | --- | --- | --- | --- | --- | --- |\n"
            ));
        }
        let code = |text: Option<&str>| text.map_or("—".to_owned(), |t| format!("`{t}`"));
        let default = match s.default {
            Unset::Value("") => "empty".to_owned(),
            Unset::Value(v) => format!("`{v}`"),
            Unset::Described(text) => text.to_owned(),
            Unset::Required => "— (required)".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {default} | {} | {} | {} | {} |\n",
            s.key,
            s.ty,
            code(s.env_name().as_deref()),
            code(s.web),
            code(s.flag),
            s.doc.trim().replace('|', "\\|"),
        ));
    }
    out
}

/// A value written as text (an environment variable, a web.config value, a
/// declared default): lists are comma-separated.
pub(crate) trait FromText: Sized {
    /// How the reference names the type.
    const TYPE: &'static str;
    /// The value, or what is wrong with `text`; a secret is never quoted.
    fn from_text(text: &str) -> Result<Self, String>;
}

impl FromText for String {
    const TYPE: &'static str = "string";
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

impl FromText for PathBuf {
    const TYPE: &'static str = "path";
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.into())
    }
}

macro_rules! parsed_from_text {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl FromText for $ty {
            const TYPE: &'static str = $name;
            fn from_text(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|e| format!("`{text}`: {e}"))
            }
        }
    )*};
}

parsed_from_text!(bool => "boolean", u32 => "integer", u64 => "integer", usize => "integer", f64 => "number");

fn items(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl FromText for Vec<String> {
    const TYPE: &'static str = "list of strings";
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(items(text).map(str::to_owned).collect())
    }
}

impl FromText for Vec<PathBuf> {
    const TYPE: &'static str = "list of paths";
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(items(text).map(PathBuf::from).collect())
    }
}

impl FromText for Vec<u32> {
    const TYPE: &'static str = "list of integers";
    fn from_text(text: &str) -> Result<Self, String> {
        items(text)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("`{text}`: not a list of numbers: {e}"))
    }
}

/// `id=secret,id=secret`, in order (the first mints).
impl FromText for OrderedSecrets {
    const TYPE: &'static str = "table of id = secret";
    fn from_text(text: &str) -> Result<Self, String> {
        items(text)
            .map(|pair| {
                pair.split_once('=')
                    .map(|(id, secret)| (id.trim().to_owned(), secret.trim().to_owned()))
                    .ok_or_else(|| "must be id=secret pairs separated by commas".to_owned())
            })
            .collect::<Result<_, _>>()
            .map(OrderedSecrets)
    }
}

/// `Some(x)` for a given literal, `None` for none: the optional parts of a
/// declaration.
macro_rules! some {
    () => {
        None
    };
    ($x:literal) => {
        Some($x)
    };
}

/// Declares one app.toml table: `struct Name in "prefix." (env: bool) {…}`,
/// then the tables inside it (`tables`, always present, merged key by key)
/// and those whose presence means something (`optional`, like
/// `[storage.s3]`). Each key is `/// meaning` then
/// `name: Type = Unset::…` and optionally `, web "Name"` and `, flag "--x"`.
macro_rules! settings_table {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident in $prefix:literal (env: $env:literal) {
            $(
                $(#[doc = $doc:literal])+
                $field:ident : $ty:ty = $default:expr
                    $(, web $web:literal)? $(, flag $flag:literal)?;
            )*
        }
        $(tables { $($tab:ident : $tab_ty:ty),* $(,)? })?
        $(optional { $($opt:ident : $opt_ty:ty),* $(,)? })?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        $vis struct $name {
            $( $(#[doc = $doc])+ pub $field: Option<$ty>, )*
            $($( #[serde(default)] pub $tab: $tab_ty, )*)?
            $($( pub $opt: Option<$opt_ty>, )*)?
        }

        impl $name {
            const PREFIX: &'static str = $prefix;
            const OWN: &'static [$crate::config::declare::Setting] = &[$(
                $crate::config::declare::Setting {
                    key: concat!($prefix, stringify!($field)),
                    ty: <$ty as $crate::config::declare::FromText>::TYPE,
                    default: {
                        use $crate::config::declare::Unset::*;
                        $default
                    },
                    env: $env,
                    web: $crate::config::declare::some!($($web)?),
                    flag: $crate::config::declare::some!($($flag)?),
                    doc: concat!($($doc),+),
                },
            )*];

            /// Every key of this table and of the tables inside it.
            pub(crate) fn declared() -> Vec<&'static $crate::config::declare::Setting> {
                let all = Self::OWN.iter();
                $($( let all = all.chain(<$tab_ty>::declared()); )*)?
                $($( let all = all.chain(<$opt_ty>::declared()); )*)?
                all.collect()
            }

            /// The lowest layer: every key declared with an `Unset::Value`,
            /// here and in the tables always inside this one.
            pub(crate) fn defaults() -> Result<Self, $crate::config::ConfigError> {
                let mut layer = Self::default();
                for setting in Self::OWN {
                    if let $crate::config::declare::Unset::Value(text) = setting.default {
                        layer.set_text(setting.key, text, "built-in default")?;
                    }
                }
                $($( layer.$tab = <$tab_ty>::defaults()?; )*)?
                Ok(layer)
            }

            /// Every setting of `upper` that is set wins over this layer's.
            pub(crate) fn overlay(self, upper: Self) -> Self {
                Self {
                    $( $field: upper.$field.or(self.$field), )*
                    $($( $tab: self.$tab.overlay(upper.$tab), )*)?
                    $($( $opt: match (self.$opt, upper.$opt) {
                        (Some(lower), Some(upper)) => Some(lower.overlay(upper)),
                        (lower, upper) => upper.or(lower),
                    }, )*)?
                }
            }

            /// Sets `key` (dotted) from `text`; false if the key is not in
            /// this table. `source` is what an error names.
            pub(crate) fn set_text(
                &mut self,
                key: &str,
                text: &str,
                source: &str,
            ) -> Result<bool, $crate::config::ConfigError> {
                if !key.starts_with(Self::PREFIX) {
                    return Ok(false);
                }
                $( if key == concat!($prefix, stringify!($field)) {
                    let value = $crate::config::declare::FromText::from_text(text)
                        .map_err(|problem| $crate::config::ConfigError::new(source, key, problem))?;
                    self.$field = Some(value);
                    return Ok(true);
                } )*
                $($( if self.$tab.set_text(key, text, source)? {
                    return Ok(true);
                } )*)?
                $($( if key.starts_with(<$opt_ty>::PREFIX) {
                    return self.$opt.get_or_insert_default().set_text(key, text, source);
                } )*)?
                Ok(false)
            }
        }
    };
}

pub(crate) use {settings_table, some};
