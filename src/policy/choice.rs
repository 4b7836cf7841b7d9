//! `#[serde(with = "crate::policy::choice")]` for a choice with settings (an enum such as
//! the limit's algorithm): a table named by the choice (`{ fixed = { max = 64 } }`), the
//! choice alone when it has no settings (`"unlimited"`), or YAML's tag (`!fixed { max: 64 }`)
//! — the same shape in every format, where YAML alone would take only its tag.

use serde::de::value::{EnumAccessDeserializer, MapAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, Visitor};
use serde::ser::{Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

pub(crate) fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    value.serialize(s)
}

pub(crate) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    d.deserialize_any(Choice(PhantomData))
}

struct Choice<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Choice<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a choice: its name, or a table of one key, the name, holding its settings")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        T::deserialize(text.into_deserializer())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let choice = T::deserialize(MapAccessDeserializer::new(&mut map))?;
        // The enum took the first key only; a second is refused here, in every format (TOML's
        // tables would otherwise drop it without a word, and one of two choices would win).
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a choice is a table of one key: `{extra}` is a second one"
            )));
        }
        Ok(choice)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<T, A::Error> {
        T::deserialize(EnumAccessDeserializer::new(data))
    }
}
