//! Single-pass dispatch on a tag field (`type`, `subtype`) without `#[serde(tag)]` or `flatten`.
//!
//! serde's internally tagged enums and `#[serde(flatten)]` buffer the whole object into an
//! intermediate tree before building the target type (measured: a `#[serde(tag = "type")]` enum
//! over the same structs parses an assistant frame 1.8x slower than this module). Here
//! the tag is read straight off the live [`MapAccess`]; the remaining entries are then handed to
//! an ordinary derived struct through [`MapAccessDeserializer`], so every byte is parsed once.
//!
//! The CLI always writes the tag first. When it is not first (hand-written frames, or the
//! `tool_result` blocks the CLI writes with `tool_use_id` first), the entries before it are
//! buffered as [`Value`]s and replayed ahead of the live ones ([`Rest`]).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, StringDeserializer};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// A string that borrows from the input when it can (keys and tags without escapes).
pub(crate) struct Str<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The entries of a map that remain after its tag was taken out: first the buffered entries that
/// preceded the tag, then the live ones.
pub(crate) struct Rest<'de, A> {
    buffered: std::vec::IntoIter<(String, Value)>,
    pending: Option<Value>,
    map: A,
    _de: PhantomData<&'de ()>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Rest<'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some((key, value)) = self.buffered.next() {
            self.pending = Some(value);
            return seed
                .deserialize(StringDeserializer::<A::Error>::new(key))
                .map(Some);
        }
        self.map.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            Some(value) => seed.deserialize(value).map_err(de::Error::custom),
            None => self.map.next_value_seed(seed),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint().map(|n| n + self.buffered.len())
    }
}

/// A tag taken out of a map: its value (when present) and the remaining entries.
pub(crate) struct Tagged<'de, A> {
    /// The tag's value; `None` when the map has no such key.
    pub(crate) tag: Option<Cow<'de, str>>,
    /// Everything else.
    pub(crate) rest: Rest<'de, A>,
}

impl<'de, A: MapAccess<'de>> Tagged<'de, A> {
    /// Read entries until `key` is found. Its value must be a string.
    pub(crate) fn split(mut map: A, key: &str) -> Result<Self, A::Error> {
        let mut buffered = Vec::new();
        let mut tag = None;
        while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
            if k == key {
                let Str(v) = map.next_value::<Str<'de>>()?;
                tag = Some(v);
                break;
            }
            let v: Value = map.next_value()?;
            buffered.push((k.into_owned(), v));
        }
        Ok(Tagged {
            tag,
            rest: Rest {
                buffered: buffered.into_iter(),
                pending: None,
                map,
                _de: PhantomData,
            },
        })
    }

    /// The tag, or `""` when absent.
    pub(crate) fn tag(&self) -> &str {
        self.tag.as_deref().unwrap_or("")
    }

    /// Deserialize the remaining entries as `T` (a derived struct; unknown keys are skipped).
    pub(crate) fn finish<T: Deserialize<'de>>(self) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(self.rest))
    }

    /// Skip the remaining entries.
    pub(crate) fn skip(self) -> Result<(), A::Error> {
        self.finish::<IgnoredAny>().map(drop)
    }

    /// Collect the whole object, tag included, as a JSON value.
    pub(crate) fn into_value(self, key: &str) -> Result<Value, A::Error> {
        let mut rest = self.rest;
        let mut out = Map::new();
        if let Some(tag) = self.tag {
            out.insert(key.to_owned(), Value::String(tag.into_owned()));
        }
        while let Some(k) = rest.next_key::<String>()? {
            let v: Value = rest.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// `deserialize_with` helper: `null` (or a missing field, with `default`) becomes `T::default()`.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// Implement `Deserialize` for a type read from a JSON object by dispatching on a tag field.
///
/// `tagged_object!(Type, "expecting", "tag", |t| body)`: `t` is a [`Tagged`] over the object's
/// map access (generic), `body` returns `Result<Type, A::Error>`.
macro_rules! tagged_object {
    ($ty:ty, $expecting:literal, $key:literal, |$t:ident| $body:expr) => {
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$ty, A::Error> {
                        let $t = $crate::message::de::Tagged::split(map, $key)?;
                        $body
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}
pub(crate) use tagged_object;

/// Accepts any JSON number (floats are rounded, negatives clamp to 0) or `null` (as `None`).
struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or null")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<u64>, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<u64>, E> {
        Ok(Some(u64::try_from(v).unwrap_or(0)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<u64>, E> {
        // `as` saturates: NaN becomes 0, out-of-range values clamp.
        Ok(Some(v.round() as u64))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(CountVisitor)
    }
}

/// `deserialize_with` for counts and durations: any number; `null` is 0.
pub(crate) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(CountVisitor)
        .map(Option::unwrap_or_default)
}

/// `deserialize_with` for optional counts and durations: any number, or `null`.
pub(crate) fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(CountVisitor)
}
