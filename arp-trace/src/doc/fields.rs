//! The man page's JSON FIELDS section, rendered from the JSON Schema the records are
//! validated against (`arp-trace-model/schema/arp-trace.schema.json`), so the page and the
//! schema describe each field in the same words.

use std::fmt;

use roff::{bold, italic, roman, Roff};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The schema, compiled in.
pub const SCHEMA: &str = include_str!("../../../arp-trace-model/schema/arp-trace.schema.json");

/// A JSON object with its keys in the schema's order (serde_json's map sorts them), so the
/// page lists fields as the schema and the records do: `type` first.
struct Ordered<T>(Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry()? {
                    out.push(kv);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// One `$defs` entry: a record, an object inside records, or a value type.
#[derive(serde::Deserialize)]
struct Def {
    #[serde(default)]
    description: String,
    properties: Option<Ordered<Value>>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(rename = "enum")]
    values: Option<Vec<Value>>,
}

#[derive(serde::Deserialize)]
struct Schema {
    #[serde(default)]
    description: String,
    properties: Value,
    #[serde(rename = "$defs", default)]
    defs: Ordered<Def>,
}

/// A short name for a property's type: `ipv4`, `u64 or null`, `array of if_addr`,
/// `request or reply`.
fn type_name(v: &Value) -> String {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    if let Some(c) = v.get("const") {
        return c.to_string();
    }
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = e
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect();
        return match names.len() {
            0..=6 => names.join(" or "),
            _ => format!("one of {} values", names.len()),
        };
    }
    if let Some(any) = v
        .get("anyOf")
        .or_else(|| v.get("oneOf"))
        .and_then(Value::as_array)
    {
        return any.iter().map(type_name).collect::<Vec<_>>().join(" or ");
    }
    match v.get("type") {
        Some(Value::String(t)) if t == "array" => match v.get("items") {
            Some(items) => format!("array of {}", type_name(items)),
            None => "array".into(),
        },
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    }
}

fn description(v: &Value) -> &str {
    v.get("description").and_then(Value::as_str).unwrap_or("")
}

/// Each property of an object definition: name (bold), type (italic), description.
fn properties(roff: &mut Roff, def: &Def) {
    for (name, p) in def.properties.iter().flat_map(|p| &p.0) {
        roff.control("TP", []);
        let optional = if def.required.contains(name) {
            ""
        } else {
            ", optional"
        };
        roff.text([
            bold(name.as_str()),
            roman(" ("),
            italic(type_name(p)),
            roman(format!("{optional})")),
        ]);
        roff.text([roman(description(p))]);
    }
}

/// The record types in the order the schema's `type` lists them.
fn record_types(schema: &Schema) -> Vec<String> {
    schema
        .properties
        .pointer("/type/enum")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Renders the section body from `schema` (the schema's text).
pub fn render(roff: &mut Roff, schema: &str) -> Result<(), String> {
    let schema: Schema =
        serde_json::from_str(schema).map_err(|e| format!("the JSON Schema does not parse: {e}"))?;
    let records = record_types(&schema);
    if records.is_empty() {
        return Err("the JSON Schema lists no record types".into());
    }
    let def = |name: &str| {
        schema
            .defs
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
    };
    roff.control("PP", []);
    roff.text([roman(schema.description.as_str())]);
    for r in &records {
        let d = def(r).ok_or_else(|| format!("the JSON Schema has no definition of {r}"))?;
        roff.control("SS", [format!("{r} records").as_str()]);
        roff.control("PP", []);
        roff.text([roman(d.description.as_str())]);
        properties(roff, d);
    }
    let others = schema.defs.0.iter().filter(|(n, _)| !records.contains(n));
    roff.control("SS", ["Objects inside records"]);
    for (name, d) in others.clone().filter(|(_, d)| d.properties.is_some()) {
        roff.control("TP", []);
        roff.text([bold(name.as_str())]);
        roff.text([roman(d.description.as_str())]);
        roff.control("RS", []);
        properties(roff, d);
        roff.control("RE", []);
    }
    roff.control("SS", ["Value types"]);
    for (name, d) in others.filter(|(_, d)| d.properties.is_none()) {
        roff.control("TP", []);
        roff.text([bold(name.as_str())]);
        let mut text = d.description.clone();
        if let Some(values) = &d.values {
            let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
            text.push_str(&format!(" One of: {}.", values.join(", ")));
        }
        roff.text([roman(text)]);
    }
    Ok(())
}

/// The JSON FIELDS section body.
pub fn json_fields(roff: &mut Roff) {
    if let Err(e) = render(roff, SCHEMA) {
        // Only a broken build gets here; the unit test below keeps it from shipping.
        roff.control("PP", []);
        roff.text([roman(format!("({e}.)"))]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_and_property_of_the_schema_is_on_the_page() {
        let mut roff = Roff::new();
        render(&mut roff, SCHEMA).unwrap();
        // Undo roff's escapes: hyphens, apostrophes, backslashes.
        let page = roff
            .render()
            .replace("\\-", "-")
            .replace("\\*(Aq", "'")
            .replace("\\\\", "\\");
        let records = record_types(&serde_json::from_str(SCHEMA).unwrap());
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        for r in [
            "header",
            "arp",
            "ndisc",
            "neigh_failed",
            "facts_change",
            "summary",
        ] {
            assert!(records.iter().any(|x| x == r), "{records:?}");
        }
        for (name, def) in schema["$defs"].as_object().unwrap() {
            assert!(page.contains(&format!("\\fB{name}\\fR")) || records.contains(name));
            for (p, v) in def["properties"].as_object().into_iter().flatten() {
                assert!(page.contains(&format!("\\fB{p}\\fR")), "{name}.{p} missing");
                let d = description(v);
                assert!(!d.is_empty(), "{name}.{p} has no description");
                assert!(page.contains(d), "{name}.{p}: {d}");
            }
        }
    }

    #[test]
    fn types_read_as_words() {
        let t = |s: &str| type_name(&serde_json::from_str(s).unwrap());
        assert_eq!(t(r##"{"$ref":"#/$defs/ipv4"}"##), "ipv4");
        assert_eq!(
            t(r##"{"anyOf":[{"$ref":"#/$defs/netns_name"},{"type":"null"}]}"##),
            "netns_name or null"
        );
        assert_eq!(t(r#"{"type":["integer","null"]}"#), "integer or null");
        assert_eq!(t(r#"{"enum":["request","reply"]}"#), "request or reply");
        assert_eq!(
            t(r##"{"type":"array","items":{"$ref":"#/$defs/cidr"}}"##),
            "array of cidr"
        );
        assert_eq!(t(r#"{"const":"arp"}"#), "\"arp\"");
        assert!(render(&mut Roff::new(), "{").is_err());
        assert!(render(&mut Roff::new(), "{}").is_err());
    }
}
