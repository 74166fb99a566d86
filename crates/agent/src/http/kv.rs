//! `/v1/kv/*`.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meshgate_acl::{Access, Resource};
use meshgate_state::{Applied, Command, KvSetOp, Table};
use meshgate_types::kv::KvEntry;

use super::{
    AclFilter, AclRule, ApiError, ApiResult, Ctx, Route, answer_headers, blocking_on, handler,
    json, json_as, json_body_in, route, set_index_headers, to_json_bytes,
};

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/kv/{*key}",
            AclRule::Handler,
            handler!(get),
        ),
        route(
            Method::PUT,
            "/v1/kv/{*key}",
            AclRule::Param(Resource::Key, Access::Write, 0),
            handler!(put),
        ),
        route(
            Method::DELETE,
            "/v1/kv/{*key}",
            AclRule::Handler,
            handler!(delete),
        ),
    ]
}

/// Cleans a key like Go's `path.Clean`, keeping a trailing `/`, and refuses
/// leading/trailing spaces and path traversal.
pub fn clean_key(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    let mut key = clean_path(raw);
    if raw.ends_with('/') && !key.ends_with('/') {
        key.push('/');
    }
    validate_key(&key)?;
    Ok(key)
}

fn validate_key(key: &str) -> Result<(), ApiError> {
    let spaces = || ApiError::internal("invalid key name, leading/trailing spaces are not allowed");
    let traversal = || ApiError::internal("invalid key name, path traversal is not allowed");
    if key.starts_with(' ') || key.ends_with(' ') {
        return Err(spaces());
    }
    if key.split('/').any(|seg| seg == "..") {
        return Err(traversal());
    }
    if key.contains('%') {
        let decoded: String = percent_decode(key);
        if decoded != key {
            if decoded.contains("..") {
                return Err(traversal());
            }
            if decoded.contains(' ') {
                return Err(spaces());
            }
        }
    }
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `path.Clean` (lexical).
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn not_found(idx: u64) -> Response {
    let mut r = StatusCode::NOT_FOUND.into_response();
    set_index_headers(&mut r, idx);
    r
}

async fn get(ctx: Ctx) -> ApiResult {
    let key = clean_key(ctx.param(0))?;
    let opts = ctx.query_options()?;
    let pretty = ctx.pretty();
    // Everything the answer needs is taken from the request up front and the
    // request dropped before a blocking wait, so that a write waking thousands
    // of watchers does not also free thousands of parsed requests.
    let agent = ctx.agent.clone();
    if ctx.query.has("keys") {
        let sep = ctx
            .query
            .get("separator")
            .or_else(|| ctx.query.get("seperator"))
            .unwrap_or("")
            .to_string();
        // Keys the caller may not read are left out, as for `?recurse`.
        let mut acl = list_filter(&ctx, &key)?;
        drop(ctx);
        let (idx, keys) =
            blocking_on(&agent, &opts, &[Table::Kv], |st| st.kv_keys(&key, &sep)).await;
        let keys: Vec<_> = keys
            .into_iter()
            .filter(|k| acl.keep(acl.id.allows(Resource::Key, Access::Read, k)))
            .collect();
        if keys.is_empty() && !key.is_empty() {
            return Ok(not_found(idx));
        }
        let mut r = kv_json(pretty, idx, &keys);
        acl.mark(&mut r);
        return Ok(r);
    }
    let recurse = ctx.query.has("recurse");
    if !recurse && key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    if recurse {
        let mut acl = list_filter(&ctx, &key)?;
        drop(ctx);
        let (idx, list) = blocking_on(&agent, &opts, &[Table::Kv], |st| {
            let (idx, list) = st.kv_list(&key);
            (idx, list.into_iter().cloned().collect::<Vec<KvEntry>>())
        })
        .await;
        let list: Vec<KvEntry> = list
            .into_iter()
            .filter(|e| acl.keep(acl.id.allows(Resource::Key, Access::Read, &e.key)))
            .collect();
        if list.is_empty() {
            return Ok(not_found(idx));
        }
        let mut r = kv_json(pretty, idx, &list);
        acl.mark(&mut r);
        return Ok(r);
    }
    ctx.require(Resource::Key, Access::Read, &key)?;
    let raw = ctx.query.has("raw");
    drop(ctx);
    if !raw && opts.index != 0 {
        // A blocking query: when a write wakes many of them on one key, the
        // first encodes the answer and the others share it. Only an answer
        // that will be sent is encoded: a re-check after a write to another
        // key finds this one's index unchanged and costs only the lookup
        // (`None`); if the wait then runs out, the answer is read once more.
        let answer = |st: &meshgate_state::State, unless: Option<u64>| {
            let (idx, e) = st.kv_get(&key);
            let body = (Some(idx) != unless).then(|| e.map(|e| agent.kv_answers.get(e, pretty)));
            (idx, body)
        };
        let headers = answer_headers();
        let (idx, body) = blocking_on(&agent, &opts, &[Table::Kv], |st| {
            answer(st, Some(opts.index))
        })
        .await;
        let (idx, body) = match body {
            Some(body) => (idx, body),
            None => {
                let (idx, body) = answer(&agent.store.read(), None);
                (idx, body.flatten())
            }
        };
        return Ok(match body {
            Some(body) => {
                let mut r = json_body_in(body, headers);
                set_index_headers(&mut r, idx);
                r
            }
            None => not_found(idx),
        });
    }
    let (idx, entry) = blocking_on(&agent, &opts, &[Table::Kv], |st| {
        let (idx, e) = st.kv_get(&key);
        (idx, e.cloned())
    })
    .await;
    let Some(entry) = entry else {
        return Ok(not_found(idx));
    };
    if raw {
        let mut r = Response::new(Body::from(entry.value.unwrap_or_default()));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            "content-security-policy",
            HeaderValue::from_static("sandbox"),
        );
        set_index_headers(&mut r, idx);
        return Ok(r);
    }
    Ok(kv_json(pretty, idx, &[entry]))
}

/// The filter of a listing: with `acl.enable_key_list_policy`, listing needs
/// `key:list` on the prefix first; entries are always filtered by `key:read`.
fn list_filter(ctx: &Ctx, prefix: &str) -> Result<AclFilter, ApiError> {
    let acl = AclFilter::new(ctx)?;
    if ctx.agent.acl.key_list_policy {
        acl.id.require(Resource::Key, Access::List, prefix)?;
    }
    Ok(acl)
}

/// The JSON answer (`[entry]`) for one KV entry, kept for the next reader of
/// the very same entry: a write that wakes thousands of blocking queries on
/// one key has it encoded once, not thousands of times. A hit needs the
/// stored entry to be equal to the one read (key, value, flags, session,
/// indexes), so a stale answer cannot be served whatever changed it.
#[derive(Default)]
pub struct SharedAnswer(parking_lot::Mutex<Option<(KvEntry, bool, Bytes)>>);

impl SharedAnswer {
    /// `[e]` as JSON, indented when `pretty`.
    pub fn get(&self, e: &KvEntry, pretty: bool) -> Bytes {
        if let Some((entry, p, body)) = &*self.0.lock()
            && *p == pretty
            && entry == e
        {
            return body.clone();
        }
        let body = Bytes::from(to_json_bytes(std::slice::from_ref(e), pretty));
        *self.0.lock() = Some((e.clone(), pretty, body.clone()));
        body
    }
}

fn kv_json<T: serde::Serialize + ?Sized>(pretty: bool, idx: u64, v: &T) -> Response {
    let mut r = json_as(pretty, v);
    set_index_headers(&mut r, idx);
    r
}

/// `Conflicting flags: <query, keys sorted>\n`.
fn conflicting(ctx: &Ctx) -> ApiError {
    let mut pairs = ctx.query.0.clone();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    ApiError::bad_request(format!("Conflicting flags: {encoded}\n"))
}

fn parse_u64(v: &str) -> Result<u64, ApiError> {
    v.parse::<u64>().map_err(|_| {
        ApiError::internal(format!(
            "strconv.ParseUint: parsing \"{v}\": invalid syntax"
        ))
    })
}

async fn put(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let key = clean_key(ctx.param(0))?;
    if key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    let q = &ctx.query;
    let n = ["cas", "acquire", "release"]
        .iter()
        .filter(|k| q.has(k))
        .count();
    if n > 1 {
        return Err(conflicting(&ctx));
    }
    let flags = match q.get("flags") {
        Some(f) => parse_u64(f)?,
        None => 0,
    };
    let max = ctx.agent.config.kv_max_value_size();
    if ctx.body.len() as u64 > max {
        let msg = if ctx.headers.contains_key(header::CONTENT_LENGTH) {
            format!(
                "Request body({} bytes) too large, max size: {max} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.",
                ctx.body.len()
            )
        } else {
            format!("Request body too large. Max allowed is {max} bytes.")
        };
        return Err(ApiError::too_large(msg));
    }
    let op = if let Some(c) = q.get("cas") {
        KvSetOp::Cas(parse_u64(c)?)
    } else if let Some(s) = q.get("acquire") {
        KvSetOp::Lock(s.to_string())
    } else if let Some(s) = q.get("release") {
        KvSetOp::Unlock(s.to_string())
    } else {
        KvSetOp::Set
    };
    if let KvSetOp::Lock(s) | KvSetOp::Unlock(s) = &op
        && s.is_empty()
    {
        return Err(ApiError::internal("raft apply failed: missing session"));
    }
    let cmd = Command::KvSet {
        key,
        value: Some(ctx.body.to_vec()),
        flags,
        op,
    };
    match ctx.agent.store.write(cmd).await {
        Ok(Applied::Bool(b)) => Ok(json(&ctx, &b)),
        Ok(_) => Ok(json(&ctx, &true)),
        Err(crate::store::WriteError::Apply(e)) => {
            Err(ApiError::internal(format!("raft apply failed: {e}")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let key = clean_key(ctx.param(0))?;
    let q = &ctx.query;
    let recurse = q.has("recurse");
    if recurse && q.has("cas") {
        return Err(conflicting(&ctx));
    }
    if !recurse && key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    let cas = match q.get("cas") {
        Some(c) => Some(parse_u64(c)?),
        None => None,
    };
    let id = ctx.identity()?;
    if recurse {
        if !id.authz.key_write_prefix(&key) {
            return Err(id.denied(&meshgate_acl::Denied::new(
                Resource::Key,
                Access::Write,
                Some(&key),
            )));
        }
    } else {
        id.require(Resource::Key, Access::Write, &key)?;
    }
    let r = ctx
        .agent
        .store
        .write(Command::KvDelete { key, recurse, cas })
        .await?;
    let ok = matches!(r, Applied::Bool(true) | Applied::Done);
    Ok(json(&ctx, &ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_answer_only_for_the_very_same_entry() {
        let cache = SharedAnswer::default();
        let e = KvEntry {
            key: "k".into(),
            value: Some(b"v1".to_vec()),
            create_index: 3,
            modify_index: 7,
            ..KvEntry::default()
        };
        let first = cache.get(&e, false);
        assert_eq!(
            &first[..],
            br#"[{"LockIndex":0,"Key":"k","Flags":0,"Value":"djE=","CreateIndex":3,"ModifyIndex":7}]"#
        );
        // The same entry: the same bytes, not a new encoding.
        let again = cache.get(&e.clone(), false);
        assert_eq!(again.as_ptr(), first.as_ptr());
        // Anything different is encoded afresh, even with equal indexes.
        let mut changed = e.clone();
        changed.value = Some(b"v2".to_vec());
        assert!(
            std::str::from_utf8(&cache.get(&changed, false))
                .unwrap()
                .contains("djI=")
        );
        let mut locked = changed.clone();
        locked.session = "s".into();
        assert!(
            std::str::from_utf8(&cache.get(&locked, false))
                .unwrap()
                .contains(r#""Session":"s""#)
        );
        let pretty = cache.get(&locked, true);
        assert!(pretty.starts_with(b"[\n    {"));
        assert_ne!(cache.get(&locked, false), pretty);
    }

    #[test]
    fn key_cleaning() {
        assert_eq!(clean_key("a/b/").unwrap(), "a/b/");
        assert_eq!(clean_key("a//b").unwrap(), "a/b");
        assert_eq!(clean_key("/a").unwrap(), "/a");
        assert_eq!(clean_key("a/./b").unwrap(), "a/b");
        assert_eq!(clean_key("").unwrap(), "");
        assert_eq!(clean_key("a/../b").unwrap(), "b");
        assert!(clean_key(" a").is_err());
        assert!(clean_key("a%2F..%2Fb").is_err());
        assert_eq!(
            clean_key("x%2e%2e").unwrap_err().message,
            "invalid key name, path traversal is not allowed"
        );
    }
}
