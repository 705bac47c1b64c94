//! The analytics sink's record decoder: pipeline records' JSON straight to Arrow column
//! buffers, without a Python object per field.
//!
//! Why: decoding in Python (orjson to a dict, the mapping to a row tuple, pyarrow reading
//! the tuples back) cost about 9 µs a record, more than the engine's insert of the row with
//! all its roll-ups. Here the JSON is parsed by sonic-rs (SIMD) into a struct that borrows
//! its texts from the payload, and the texts are copied once, into the column buffers; the
//! GIL is released meanwhile, so the sink's storing thread runs beside it.
//!
//! What it decides, and what it leaves to Python: `analytics.mapping.row_from_json` is the
//! reference. A record is taken here only when it is plainly well formed: a JSON object
//! whose fields read here have the types the pipeline writes (text or null), no escapes in
//! those texts, no repeated keys, scores written as plain decimals, and every check of
//! `row_from_json` passes. Anything else (including every record `row_from_json` refuses)
//! is handed back by index, and Python decodes it the reference way, with its exact reason.
//! So this never accepts a record the reference would refuse, and the rows it gives are the
//! reference's rows (the tests hold the two equal, record by record, on every kind and on
//! a corpus of mutated records).
//!
//! The rules (kinds, their event kind and status, which field dates them, which carry a
//! score, a model, a reason) come from Python at construction: one source of truth.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// Columns of text: Arrow's utf8 layout (validity bitmap, i32 offsets, bytes).
struct TextColumn {
    offsets: Vec<i32>,
    data: Vec<u8>,
    validity: Vec<u8>,
    nulls: usize,
    len: usize,
}

impl TextColumn {
    fn new(rows: usize, width: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        TextColumn {
            offsets,
            data: Vec::with_capacity(rows * width),
            validity: Vec::with_capacity(rows / 8 + 1),
            nulls: 0,
            len: 0,
        }
    }

    fn push(&mut self, value: Option<&str>) {
        if self.len % 8 == 0 {
            self.validity.push(0);
        }
        match value {
            Some(text) => {
                self.data.extend_from_slice(text.as_bytes());
                *self.validity.last_mut().unwrap() |= 1 << (self.len % 8);
            }
            None => self.nulls += 1,
        }
        self.offsets.push(self.data.len() as i32);
        self.len += 1;
    }
}

/// A column of optional float32 (the risk score).
struct ScoreColumn {
    values: Vec<f32>,
    validity: Vec<u8>,
    nulls: usize,
}

impl ScoreColumn {
    fn push(&mut self, value: Option<f32>) {
        let len = self.values.len();
        if len % 8 == 0 {
            self.validity.push(0);
        }
        match value {
            Some(score) => {
                self.values.push(score);
                *self.validity.last_mut().unwrap() |= 1 << (len % 8);
            }
            None => {
                self.values.push(0.0);
                self.nulls += 1;
            }
        }
    }
}

/// The shadow scores: Arrow's map<utf8, float32> layout (offsets per row; keys; values).
struct ScoresColumn {
    offsets: Vec<i32>,
    names: TextColumn,
    values: Vec<f32>,
}

/// Which field dates an event of a kind.
#[derive(Clone, Copy)]
enum When {
    Requested,
    Decided,
    Completed,
    Failed,
    Discarded,
}

impl When {
    fn parse(field: &str) -> PyResult<Self> {
        Ok(match field {
            "requested_at" => When::Requested,
            "decided_at" => When::Decided,
            "completed_at" => When::Completed,
            "failed_at" => When::Failed,
            "discarded_at" => When::Discarded,
            other => return Err(PyValueError::new_err(format!("no time field {other:?}"))),
        })
    }
}

/// A kind's rule as Python passes it: (kind, event kind, status, time field, has a score,
/// is scored by a model, has a reason, is read from the review topic).
type RuleTuple = (String, String, String, String, bool, bool, bool, bool);

/// One record kind, as `analytics.mapping` describes it.
struct KindRule {
    name: String,
    event_kind: String,
    status: String,
    when: When,
    has_score: bool,
    scored: bool,
    has_reason: bool,
    review_topic: bool,
}

/// The shadow scores as written: (model, score text) pairs in their order.
struct Scores<'a>(Vec<(&'a str, &'a str)>);

impl<'de: 'a, 'a> Deserialize<'de> for Scores<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for PairsVisitor<'a> {
            type Value = Scores<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of model name -> score text")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::new();
                while let Some((name, score)) = map.next_entry::<&'de str, &'de str>()? {
                    pairs.push((name, score));
                }
                Ok(Scores(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(default, borrow)]
    channel: Option<&'a str>,
    #[serde(default, borrow)]
    terminal_id: Option<&'a str>,
}

/// A present schema version must be an integer (null is not "absent").
fn present_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    i64::deserialize(deserializer).map(Some)
}

/// The fields `row_from_json` reads. Text fields are borrowed from the payload: a text with
/// an escape, a number or any other type where text is expected, and a repeated key all
/// fail the parse, and the record goes to Python.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(default, borrow)]
    kind: Option<&'a str>,
    #[serde(default, deserialize_with = "present_integer")]
    schema_version: Option<i64>,
    #[serde(default, borrow)]
    event_id: Option<&'a str>,
    #[serde(default, borrow)]
    transaction_id: Option<&'a str>,
    #[serde(default, borrow)]
    transaction_type: Option<&'a str>,
    #[serde(default, borrow)]
    source_wallet_id: Option<&'a str>,
    #[serde(default, borrow)]
    destination_wallet_id: Option<&'a str>,
    #[serde(default, borrow)]
    source_user_id: Option<&'a str>,
    #[serde(default, borrow)]
    destination_user_id: Option<&'a str>,
    #[serde(default, borrow)]
    amount: Option<&'a str>,
    #[serde(default, borrow)]
    fee_amount: Option<&'a str>,
    #[serde(default, borrow)]
    total_amount: Option<&'a str>,
    #[serde(default, borrow)]
    captured_amount: Option<&'a str>,
    #[serde(default, borrow)]
    currency_code: Option<&'a str>,
    #[serde(default, borrow)]
    reason_code: Option<&'a str>,
    #[serde(default, borrow)]
    risk_score: Option<&'a str>,
    #[serde(default, borrow)]
    requested_at: Option<&'a str>,
    #[serde(default, borrow)]
    decided_at: Option<&'a str>,
    #[serde(default, borrow)]
    completed_at: Option<&'a str>,
    #[serde(default, borrow)]
    failed_at: Option<&'a str>,
    #[serde(default, borrow)]
    discarded_at: Option<&'a str>,
    #[serde(default, borrow)]
    client_id: Option<&'a str>,
    #[serde(default, borrow)]
    scored_by: Option<&'a str>,
    #[serde(default, borrow)]
    shadow_scores: Option<Scores<'a>>,
    #[serde(default, borrow)]
    metadata: Option<Metadata<'a>>,
}

/// A score written as a plain decimal (`-`? digits, then `.` digits or nothing): what the
/// pipeline writes, and what Python's `float` reads to the same value. Other spellings
/// Python may still read ("1e2", " 5", "5.") go to Python.
fn plain_decimal(text: &str) -> Option<f64> {
    let digits = text.strip_prefix('-').unwrap_or(text).as_bytes();
    let point = digits.iter().position(|&b| b == b'.');
    let (whole, fraction) = match point {
        Some(at) => (&digits[..at], Some(&digits[at + 1..])),
        None => (digits, None),
    };
    if whole.is_empty() || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    text.parse::<f64>().ok().filter(|score| score.is_finite())
}

/// Ids in their canonical text (lower case), as the column check leaves them.
type Id = [u8; 36];

/// The id columns, in the order of `Row::ids`; the first, second and last are required.
const ID_COLUMNS: [&str; 7] = [
    "event_id",
    "transaction_id",
    "source_wallet_id",
    "destination_wallet_id",
    "source_user_id",
    "destination_user_id",
    "client_id",
];
const REQUIRED_IDS: [bool; 7] = [true, true, false, false, false, false, true];
const TIME_COLUMNS: [&str; 2] = ["event_time", "requested_at"];
const AMOUNT_COLUMNS: [&str; 3] = ["amount", "fee_amount", "total_amount"];
/// The other text columns, in the order of `Row::texts`: never null in a taken row.
const TEXT_COLUMNS: [&str; 8] = [
    "event_kind",
    "transaction_type",
    "transaction_status",
    "currency_code",
    "reason_code",
    "channel",
    "terminal_id",
    "scored_by",
];

/// One record's row, every check of `row_from_json` and of the column checks passed, its
/// values converted as the column checks convert them.
struct Row<'a> {
    ids: [Option<Id>; 7],
    times: [i64; 2],
    amounts: [i128; 3],
    texts: [&'a str; 8],
    score: Option<f32>,
    shadow: Vec<(&'a str, f32)>,
}

/// A UUID's text in lower case, when it is one (hex digits and hyphens where the column
/// check's pattern puts them, in either case).
fn canonical_uuid(text: &str) -> Option<Id> {
    let bytes: &[u8; 36] = text.as_bytes().try_into().ok()?;
    let mut out = *bytes;
    for (at, byte) in out.iter_mut().enumerate() {
        if matches!(at, 8 | 13 | 18 | 23) {
            if *byte != b'-' {
                return None;
            }
        } else if byte.is_ascii_hexdigit() {
            byte.make_ascii_lowercase();
        } else {
            return None;
        }
    }
    Some(out)
}

fn digits(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |value, b| value * 10 + i64::from(b - b'0')))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z` from 1970 on, the form
/// the pipeline writes; the column check reads it to microseconds and truncates to
/// milliseconds, as this does. Other forms Arrow may still read go to Python.
fn iso_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let fraction = &b[19..b.len() - 1];
    let millis = match fraction.split_first() {
        None => 0,
        Some((b'.', places)) if (1..=6).contains(&places.len()) => {
            digits(places)?;
            places.iter().chain(b"00").take(3).fold(0, |v, d| v * 10 + i64::from(d - b'0'))
        }
        _ => return None,
    };
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let seconds = ((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second;
    Some(seconds * 1000 + millis)
}

/// An amount written `digits[.digits]`, at most 15 integer digits (no leading zero) and 4
/// decimals, as decimal(19, 4)'s unscaled integer. Anything else (a sign, an exponent, a
/// fifth decimal) goes to Python, whose column check refuses or reads it.
fn plain_amount(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let (whole, fraction) = match b.iter().position(|&c| c == b'.') {
        Some(at) => (&b[..at], &b[at + 1..]),
        None => (b, &b""[..]),
    };
    if whole.len() > 15 || (whole.len() > 1 && whole[0] == b'0') || fraction.len() > 4 {
        return None;
    }
    if b.contains(&b'.') && fraction.is_empty() {
        return None;
    }
    let mut value = i128::from(digits(whole)?);
    for place in 0..4 {
        let digit = match fraction.get(place) {
            Some(d) if d.is_ascii_digit() => i128::from(d - b'0'),
            Some(_) => return None,
            None => 0,
        };
        value = value * 10 + digit;
    }
    Some(value)
}

#[pyclass(frozen)]
struct Decoder {
    rules: Vec<KindRule>,
    schema_version: i64,
    shadow_scores_max: usize,
    model_name_max: usize,
    transaction_types: Vec<String>,
    reason_code_max: usize,
}

impl Decoder {
    /// The row of one payload, or None: the record goes to Python.
    fn row<'a>(&'a self, payload: &'a [u8], review_topic: bool) -> Option<Row<'a>> {
        let record: Record<'a> = sonic_rs::from_slice(payload).ok()?;
        let kind = record.kind?;
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.name == kind && rule.review_topic == review_topic)?;
        if record.schema_version.unwrap_or(self.schema_version) != self.schema_version {
            return None;
        }
        // A posting that captured other than the amount asked moves the captured amount:
        // Python works that out (it is rare, and it is decimal arithmetic).
        if rule.name == "TransactionPosted"
            && record.captured_amount.is_some()
            && record.captured_amount != record.amount
        {
            return None;
        }
        let score = match (rule.has_score, record.risk_score) {
            (true, Some(text)) => Some(plain_decimal(text)? as f32),
            _ => None,
        };
        let mut scored_by = "";
        let mut shadow = Vec::new();
        if rule.scored {
            scored_by = record.scored_by.unwrap_or("");
            if scored_by.chars().count() > self.model_name_max {
                return None;
            }
            if let Some(Scores(pairs)) = &record.shadow_scores {
                if pairs.len() > self.shadow_scores_max {
                    return None;
                }
                for (index, (name, text)) in pairs.iter().enumerate() {
                    if name.is_empty()
                        || name.chars().count() > self.model_name_max
                        || pairs[..index].iter().any(|(earlier, _)| earlier == name)
                    {
                        return None;
                    }
                    let value = plain_decimal(text)?;
                    if !(0.0..=100.0).contains(&value) {
                        return None;
                    }
                    shadow.push((*name, value as f32));
                }
            }
        }
        let (channel, terminal) = match &record.metadata {
            Some(metadata) => (
                metadata.channel.unwrap_or(""),
                metadata.terminal_id.unwrap_or(""),
            ),
            None => ("", ""),
        };
        // The column checks (analytics.clickhouse): ids, times, amounts, type, currency and
        // reason, converted as they convert them.
        let raw_ids = [
            record.event_id,
            record.transaction_id,
            record.source_wallet_id,
            record.destination_wallet_id,
            record.source_user_id,
            record.destination_user_id,
            record.client_id,
        ];
        let mut ids = [None; 7];
        for ((id, raw), required) in ids.iter_mut().zip(raw_ids).zip(REQUIRED_IDS) {
            match raw {
                Some(text) => *id = Some(canonical_uuid(text)?),
                None if required => return None,
                None => {}
            }
        }
        let when = match rule.when {
            When::Requested => record.requested_at,
            When::Decided => record.decided_at,
            When::Completed => record.completed_at,
            When::Failed => record.failed_at,
            When::Discarded => record.discarded_at,
        };
        let times = [iso_millis(when?)?, iso_millis(record.requested_at?)?];
        let amounts = [
            plain_amount(record.amount?)?,
            plain_amount(record.fee_amount?)?,
            plain_amount(record.total_amount?)?,
        ];
        let transaction_type = record.transaction_type?;
        if !self.transaction_types.iter().any(|known| known == transaction_type) {
            return None;
        }
        let currency = record.currency_code?;
        if currency.chars().count() != 3 {
            return None;
        }
        let reason = if rule.has_reason { record.reason_code? } else { "" };
        if reason.chars().count() > self.reason_code_max {
            return None;
        }
        Some(Row {
            ids,
            times,
            amounts,
            texts: [
                &rule.event_kind,
                transaction_type,
                &rule.status,
                currency,
                reason,
                channel,
                terminal,
                scored_by,
            ],
            score,
            shadow,
        })
    }
}

struct Columns {
    ids: Vec<TextColumn>,
    times: [Vec<i64>; 2],
    amounts: [Vec<i128>; 3],
    texts: Vec<TextColumn>,
    score: ScoreColumn,
    shadow: ScoresColumn,
}

impl Columns {
    fn new(rows: usize) -> Self {
        Columns {
            ids: ID_COLUMNS.iter().map(|_| TextColumn::new(rows, 36)).collect(),
            times: std::array::from_fn(|_| Vec::with_capacity(rows)),
            amounts: std::array::from_fn(|_| Vec::with_capacity(rows)),
            texts: TEXT_COLUMNS.iter().map(|_| TextColumn::new(rows, 12)).collect(),
            score: ScoreColumn {
                values: Vec::with_capacity(rows),
                validity: Vec::with_capacity(rows / 8 + 1),
                nulls: 0,
            },
            shadow: ScoresColumn {
                offsets: vec![0],
                names: TextColumn::new(rows, 12),
                values: Vec::with_capacity(rows),
            },
        }
    }

    fn push(&mut self, row: &Row) {
        for (column, id) in self.ids.iter_mut().zip(&row.ids) {
            // An id is 36 ASCII bytes (checked by canonical_uuid).
            column.push(id.as_ref().map(|id| std::str::from_utf8(id).unwrap_or_default()));
        }
        for (column, value) in self.times.iter_mut().zip(row.times) {
            column.push(value);
        }
        for (column, value) in self.amounts.iter_mut().zip(row.amounts) {
            column.push(value);
        }
        for (column, value) in self.texts.iter_mut().zip(row.texts) {
            column.push(Some(value));
        }
        self.score.push(row.score);
        for (name, value) in &row.shadow {
            self.shadow.names.push(Some(name));
            self.shadow.values.push(*value);
        }
        self.shadow.offsets.push(self.shadow.values.len() as i32);
    }
}

fn bytes_of<T: Copy>(values: &[T]) -> &[u8] {
    // Plain numbers (i32, i64, i128, f32) laid out as Arrow reads them: little-endian, this
    // machine's order (a decimal128 is a two's complement 128-bit integer, little-endian).
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

fn validity<'py>(py: Python<'py>, bits: &[u8], nulls: usize) -> PyObject {
    if nulls == 0 {
        py.None()
    } else {
        PyBytes::new(py, bits).into_any().unbind()
    }
}

#[pymethods]
impl Decoder {
    /// `rules`: (kind, event kind, status, time field, has a score, is scored by a model,
    /// has a reason, is read from the review topic) for every kind the sink takes; the
    /// column checks' transaction types and longest reason code.
    #[new]
    fn new(
        rules: Vec<RuleTuple>,
        schema_version: i64,
        shadow_scores_max: usize,
        model_name_max: usize,
        transaction_types: Vec<String>,
        reason_code_max: usize,
    ) -> PyResult<Self> {
        let rules = rules
            .into_iter()
            .map(|(name, event_kind, status, when, has_score, scored, has_reason, review_topic)| {
                Ok(KindRule {
                    name,
                    event_kind,
                    status,
                    when: When::parse(&when)?,
                    has_score,
                    scored,
                    has_reason,
                    review_topic,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Decoder {
            rules,
            schema_version,
            shadow_scores_max,
            model_name_max,
            transaction_types,
            reason_code_max,
        })
    }

    /// Decode `payloads` (bytes; `review_topic[i]` says whether payload i was read from the
    /// review topic). Returns (the indices of the payloads left to Python, in order; a dict
    /// of the taken rows' columns as Arrow buffers, by column name, converted as the column
    /// checks convert them): ids and other texts as ("text", validity or None, offsets,
    /// data, null count); times as ("timestamp_ms", values); amounts as ("decimal128",
    /// values: 16-byte unscaled integers, scale 4); the risk score as ("float32", validity
    /// or None, values, null count); the shadow scores as ("map", offsets, name offsets,
    /// name data, values).
    fn decode<'py>(
        &self,
        py: Python<'py>,
        payloads: &Bound<'py, PyList>,
        review_topic: Vec<bool>,
    ) -> PyResult<(Vec<usize>, Bound<'py, PyDict>)> {
        if review_topic.len() != payloads.len() {
            return Err(PyValueError::new_err("one review_topic flag per payload"));
        }
        let owned: Vec<Bound<'py, PyBytes>> = payloads
            .iter()
            .map(|item| item.downcast_into::<PyBytes>().map_err(PyErr::from))
            .collect::<PyResult<_>>()?;
        let slices: Vec<&[u8]> = owned.iter().map(|bytes| bytes.as_bytes()).collect();
        let (left, columns) = py.allow_threads(|| {
            let mut columns = Columns::new(slices.len());
            let mut left = Vec::new();
            for (index, (payload, review)) in slices.iter().zip(&review_topic).enumerate() {
                match self.row(payload, *review) {
                    Some(row) => columns.push(&row),
                    None => left.push(index),
                }
            }
            (left, columns)
        });
        let texts = ID_COLUMNS.iter().zip(&columns.ids);
        let texts = texts.chain(TEXT_COLUMNS.iter().zip(&columns.texts));
        if texts.clone().any(|(_, c)| c.data.len() > i32::MAX as usize) {
            return Err(PyValueError::new_err("a batch too large for 32-bit offsets"));
        }
        let out = PyDict::new(py);
        for (name, values) in TIME_COLUMNS.iter().zip(&columns.times) {
            out.set_item(name, ("timestamp_ms", PyBytes::new(py, bytes_of(values))))?;
        }
        for (name, values) in AMOUNT_COLUMNS.iter().zip(&columns.amounts) {
            out.set_item(name, ("decimal128", PyBytes::new(py, bytes_of(values))))?;
        }
        for (name, column) in texts {
            out.set_item(
                name,
                (
                    "text",
                    validity(py, &column.validity, column.nulls),
                    PyBytes::new(py, bytes_of(&column.offsets)),
                    PyBytes::new(py, &column.data),
                    column.nulls,
                ),
            )?;
        }
        let score = &columns.score;
        out.set_item(
            "risk_score",
            (
                "float32",
                validity(py, &score.validity, score.nulls),
                PyBytes::new(py, bytes_of(&score.values)),
                score.nulls,
            ),
        )?;
        let shadow = &columns.shadow;
        out.set_item(
            "shadow_scores",
            (
                "map",
                PyBytes::new(py, bytes_of(&shadow.offsets)),
                PyBytes::new(py, bytes_of(&shadow.names.offsets)),
                PyBytes::new(py, &shadow.names.data),
                PyBytes::new(py, bytes_of(&shadow.values)),
            ),
        )?;
        Ok((left, out))
    }
}

#[pymodule]
fn sink_decoder(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Decoder>()?;
    Ok(())
}
