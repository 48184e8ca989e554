//! Avro's binary encoding of this crate's event structs, written straight from serde.
//!
//! apache-avro's schema-aware serializer looks every field up in the schema as it goes: it
//! cost ~11,000 instructions per decided event, more than deciding it (benches/README.md).
//! The structs here mirror their schemas field for field and in order (the contract tests hold
//! them to it), so the encoding needs no schema: fields in declaration order, `int` and `long`
//! as zig-zag varints, strings and bytes length-prefixed, `Option` as the `["null", T]` union
//! every optional field is (index 0, or 1 and the value), unit enums as their symbol's index
//! (variants are declared in schema order), arrays as one block and the end marker. What the
//! contract has no use for (maps, tuples, unsigned or 128-bit integers, enums with data) is an
//! error, not a guess. The contract tests compare every kind's bytes with apache-avro's.
//!
//! [`read`] is the way back, for records written with the latest schema of their kind (older
//! ones are resolved by apache-avro); the contract tests read what apache-avro writes.

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// What cannot be written.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Appends `value`'s Avro binary encoding to `out`.
pub fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    value.serialize(&mut Writer { out })
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn long(&mut self, n: i64) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            self.out.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.out.push(z as u8);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.long(b.len() as i64);
        self.out.extend_from_slice(b);
    }
}

fn unsupported<T>(what: &str) -> Result<T, Error> {
    Err(Error(format!("{what} has no place in the event contract's Avro encoding")))
}

impl<'a> ser::Serializer for &mut Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<Self>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.push(u8::from(v));
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.long(i64::from(v));
        Ok(())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.long(i64::from(v));
        Ok(())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.long(i64::from(v));
        Ok(())
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.long(v);
        Ok(())
    }

    fn serialize_u8(self, _: u8) -> Result<(), Error> {
        unsupported("an unsigned integer")
    }

    fn serialize_u16(self, _: u16) -> Result<(), Error> {
        unsupported("an unsigned integer")
    }

    fn serialize_u32(self, _: u32) -> Result<(), Error> {
        unsupported("an unsigned integer")
    }

    fn serialize_u64(self, _: u64) -> Result<(), Error> {
        unsupported("an unsigned integer")
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_char(self, _: char) -> Result<(), Error> {
        unsupported("a char")
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.bytes(v.as_bytes());
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.bytes(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.long(0);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.long(1);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<(), Error> {
        self.long(i64::from(index));
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        unsupported("an enum with data")
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        let Some(len) = len else { return unsupported("a sequence of unknown length") };
        if len > 0 {
            self.long(len as i64);
        }
        Ok(Array(self))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        unsupported("a tuple")
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Error> {
        unsupported("a tuple struct")
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        unsupported("an enum with data")
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        unsupported("a map")
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        unsupported("an enum with data")
    }
}

impl ser::SerializeStruct for &mut Writer<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Error> {
        Ok(())
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), Error> {
        unsupported(&format!("a skipped field ({key})"))
    }
}

/// An array's one block: its items (the count was written first), then the end marker.
struct Array<W>(W);

impl ser::SerializeSeq for Array<&mut Writer<'_>> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.0)
    }

    fn end(self) -> Result<(), Error> {
        self.0.long(0);
        Ok(())
    }
}

/// Reads a string from the front of `input`, leaving what follows, without copying it.
pub fn read_str<'de>(input: &mut &'de [u8]) -> Result<&'de str, Error> {
    Reader { input }.str()
}

/// Reads a long from the front of `input`, leaving what follows.
pub fn read_long(input: &mut &[u8]) -> Result<i64, Error> {
    Reader { input }.long()
}

/// Reads a `T` from the front of `input`, leaving what follows.
pub fn read<T: DeserializeOwned>(input: &mut &[u8]) -> Result<T, Error> {
    T::deserialize(&mut Reader { input })
}

struct Reader<'a, 'de> {
    input: &'a mut &'de [u8],
}

impl<'de> Reader<'_, 'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8], Error> {
        if n > self.input.len() {
            return Err(Error(format!("{n} bytes wanted, {} left", self.input.len())));
        }
        let (taken, rest) = self.input.split_at(n);
        *self.input = rest;
        Ok(taken)
    }

    fn long(&mut self) -> Result<i64, Error> {
        let mut z: u64 = 0;
        for shift in (0..70).step_by(7) {
            let [b] = self.take(1)? else { unreachable!("one byte taken") };
            if shift == 63 && *b > 1 {
                break;
            }
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(Error("a varint longer than a long".to_owned()))
    }

    fn str(&mut self) -> Result<&'de str, Error> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|e| Error(format!("a string: {e}")))
    }

    fn len(&mut self) -> Result<usize, Error> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| Error(format!("a negative length ({n})")))
    }

    fn int<T: TryFrom<i64>>(&mut self) -> Result<T, Error> {
        let n = self.long()?;
        T::try_from(n).map_err(|_| Error(format!("{n} is out of range")))
    }
}

macro_rules! no_schema {
    ($($method:ident),+) => {$(
        fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error(concat!("the binary encoding carries no types: ", stringify!($method)).to_owned()))
        }
    )+};
}

impl<'de> de::Deserializer<'de> for &mut Reader<'_, 'de> {
    type Error = Error;

    fn is_human_readable(&self) -> bool {
        false
    }

    no_schema!(deserialize_any, deserialize_ignored_any, deserialize_identifier, deserialize_map, deserialize_char);
    no_schema!(deserialize_u8, deserialize_u16, deserialize_u32, deserialize_u64);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.take(1)? {
            [0] => visitor.visit_bool(false),
            [1] => visitor.visit_bool(true),
            other => Err(Error(format!("{other:?} is not a boolean"))),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i8(self.int()?)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i16(self.int()?)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i32(self.int()?)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(self.long()?)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let bytes = self.take(4)?;
        visitor.visit_f32(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let b = self.take(8)?;
        visitor.visit_f64(f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let n = self.len()?;
        visitor.visit_borrowed_bytes(self.take(n)?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.long()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            other => Err(Error(format!("union branch {other} of an optional field"))),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Blocks { reader: self, left: 0, done: false })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Error> {
        Err(Error("a tuple has no place in the event contract".to_owned()))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, _: usize, _: V) -> Result<V::Value, Error> {
        Err(Error("a tuple struct has no place in the event contract".to_owned()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_seq(Fields { reader: self, left: fields.len() })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let index = self.long()?;
        match u32::try_from(index) {
            Ok(i) if (i as usize) < variants.len() => visitor.visit_enum(Symbol(i)),
            _ => Err(Error(format!("enum symbol {index} of {}", variants.len()))),
        }
    }
}

/// A record's fields, in order.
struct Fields<'r, 'a, 'de> {
    reader: &'r mut Reader<'a, 'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Fields<'_, '_, 'de> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// An array's items, block after block until the empty one.
struct Blocks<'r, 'a, 'de> {
    reader: &'r mut Reader<'a, 'de>,
    left: usize,
    done: bool,
}

impl<'de> de::SeqAccess<'de> for Blocks<'_, '_, 'de> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        while self.left == 0 {
            if self.done {
                return Ok(None);
            }
            let count = self.reader.long()?;
            if count == 0 {
                self.done = true;
                return Ok(None);
            }
            if count < 0 {
                self.reader.long()?; // the block's size in bytes, which a reader may skip by
            }
            // Each item is at least a byte: a count past what is left is corrupt.
            let count = count.unsigned_abs();
            if count > self.reader.input.len() as u64 {
                return Err(Error(format!("an array block of {count} items in {} bytes", self.reader.input.len())));
            }
            self.left = count as usize;
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

/// An enum's symbol, by index.
struct Symbol(u32);

impl<'de> de::EnumAccess<'de> for Symbol {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: de::DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let index: de::value::U32Deserializer<Error> = self.0.into_deserializer();
        Ok((seed.deserialize(index)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for Symbol {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(self, _: T) -> Result<T::Value, Error> {
        Err(Error("an enum with data has no place in the event contract".to_owned()))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Error> {
        Err(Error("an enum with data has no place in the event contract".to_owned()))
    }

    fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], _: V) -> Result<V::Value, Error> {
        Err(Error("an enum with data has no place in the event contract".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zig_zag_varints() {
        let cases: [(i64, &[u8]); 7] = [
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i64::MAX, &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            (i64::MIN, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ];
        for (n, expected) in cases {
            let mut out = Vec::new();
            write(&n, &mut out).expect("write");
            assert_eq!(out, expected, "{n}");
        }
    }

    #[test]
    fn what_the_contract_has_no_use_for_is_an_error() {
        let mut out = Vec::new();
        assert!(write(&7u32, &mut out).is_err());
        assert!(write(&std::collections::BTreeMap::from([(1, 2)]), &mut out).is_err());
        assert!(write(&(1, 2), &mut out).is_err());
    }
}
