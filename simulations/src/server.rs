//! The HTTP face of a simulated cluster: routing, authentication, fault injection, discovery,
//! CRUD, watch streams and Table printing, over the [`Store`](crate::store::Store).
//!
//! Input: one HTTP request. Output: one response — JSON objects, `Status` errors, or a chunked
//! stream of watch events (`{"type": "...", "object": {...}}` per line) for `?watch=true`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::cluster::Shared;
use crate::error::{ApiError, ApiResult, Reason};
use crate::patch::PatchKind;
use crate::resources::{Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{DeleteOptions, EventType, ListOptions, WatchEvent, WriteOptions};
use crate::table::{self, IncludeObject};

/// Largest request body accepted.
const MAX_BODY: usize = 32 * 1024 * 1024;

type Query = HashMap<String, String>;

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    json_response_ct(code, body, "application/json")
}

fn json_response_ct(code: StatusCode, body: &Value, content_type: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = code;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.reason.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(code, &e.to_status());
    if e.reason == Reason::Unauthorized {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

fn accepts(headers: &HeaderMap, needle: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .next()
                .is_some_and(|first| first.contains(needle))
        })
}

fn wants_table(headers: &HeaderMap) -> bool {
    accepts(headers, "as=Table")
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').next().is_some_and(|f| {
                f.contains("as=APIGroupDiscoveryList")
                    && f.contains("g=apidiscovery.k8s.io")
                    && f.split(';').any(|p| p.trim() == "v=v2")
            })
        })
}

const AGGREGATED_CT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const TABLE_CT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// The Kubernetes verb of a request, for the per-verb request counters.
fn verb_of(method: &Method, uri: &http::Uri) -> &'static str {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segs.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return "discovery",
    };
    if rest.is_empty() {
        return "discovery";
    }
    let named = match rest {
        ["namespaces"] => false,
        ["namespaces", _] => true,
        ["namespaces", _, _resource] => false,
        ["namespaces", _, _resource, ..] => true,
        [_resource] => false,
        _ => true,
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
}

/// Handle one request against the cluster.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut verbs) = shared.verbs.lock() {
        *verbs.entry(verb_of(req.method(), req.uri())).or_insert(0) += 1;
    }
    let path = req.uri().path().to_string();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return Response::new(Body::from("ok"));
    }
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() || shared.auth.check(token).is_none() {
        return error_response(&ApiError::new(Reason::Unauthorized, "Unauthorized"));
    }
    let rate = shared.faults.error_rate();
    if rate > 0.0 && rand::thread_rng().r#gen::<f64>() < rate {
        return error_response(&ApiError::new(
            Reason::InternalError,
            "Internal error occurred: injected fault",
        ));
    }
    if let Some(message) = shared.faults.writes_denied()
        && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
    {
        return error_response(&ApiError::new(
            Reason::Forbidden,
            format!("admission webhook \"policy.sim.local\" denied the request: {message}"),
        ));
    }
    match route(shared, req).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

fn not_found_path() -> ApiError {
    ApiError::new(
        Reason::NotFound,
        "the server could not find the requested resource",
    )
}

async fn route(shared: Arc<Shared>, req: Request<Body>) -> ApiResult<Response<Body>> {
    let path = req.uri().path().trim_matches('/').to_string();
    let segs: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    let headers = req.headers().clone();
    let get = req.method() == Method::GET;
    match segs.as_slice() {
        ["version"] if get => Ok(json_response(StatusCode::OK, &version())),
        ["api"] if get => Ok(if wants_aggregated(&headers) {
            json_response_ct(
                StatusCode::OK,
                &shared.store.registry().aggregated(true),
                AGGREGATED_CT,
            )
        } else {
            json_response(StatusCode::OK, &Registry::core_versions())
        }),
        ["apis"] if get => {
            let reg = shared.store.registry();
            Ok(if wants_aggregated(&headers) {
                json_response_ct(StatusCode::OK, &reg.aggregated(false), AGGREGATED_CT)
            } else {
                json_response(StatusCode::OK, &reg.group_list())
            })
        }
        ["api", "v1"] if get => shared
            .store
            .registry()
            .resource_list("", "v1")
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(not_found_path),
        ["apis", group] if get => shared
            .store
            .registry()
            .group(group)
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(not_found_path),
        ["apis", group, version] if get => shared
            .store
            .registry()
            .resource_list(group, version)
            .map(|v| json_response(StatusCode::OK, &v))
            .ok_or_else(not_found_path),
        ["openapi", "v3"] if get => Ok(json_response(
            StatusCode::OK,
            &crate::openapi::root(&shared.store.registry()),
        )),
        ["openapi", "v3", gv @ ..] if get => {
            crate::openapi::group_version(&shared.store.registry(), &gv.join("/"))
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(not_found_path)
        }
        ["api", "v1", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource_request(shared, req, String::new(), "v1".into(), rest).await
        }
        ["apis", group, version, rest @ ..] => {
            let (g, v) = (group.to_string(), version.to_string());
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource_request(shared, req, g, v, rest).await
        }
        _ => Err(not_found_path()),
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-mesh-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(shared: &Shared, group: &str, version: &str, rest: &[String]) -> ApiResult<Target> {
    let (namespace, rest) = if rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2].as_str(), "status" | "finalize"))
    {
        (Some(rest[1].clone()), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 {
        return Err(not_found_path());
    }
    let rt = shared
        .store
        .find(group, version, &rest[0])
        .ok_or_else(not_found_path)?;
    if namespace.is_some() && !rt.namespaced {
        return Err(not_found_path());
    }
    let sub = rest.get(2).cloned();
    if let Some(s) = &sub {
        let ok = match s.as_str() {
            "status" => rt.status_subresource,
            "finalize" => rt.kind == "Namespace",
            "token" => rt.kind == "ServiceAccount",
            _ => false,
        };
        if !ok {
            return Err(not_found_path());
        }
    }
    Ok(Target {
        rt,
        namespace,
        name: rest.get(1).cloned(),
        sub,
    })
}

fn query(req: &Request<Body>) -> Query {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn list_options(q: &Query, rt: &ResourceType) -> ApiResult<ListOptions> {
    Ok(ListOptions {
        labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        fields: FieldSelector::parse(
            q.get("fieldSelector").map(String::as_str).unwrap_or(""),
            &rt.kind,
        )?,
        limit: q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

fn write_options(q: &Query) -> WriteOptions {
    WriteOptions {
        dry_run: q.get("dryRun").is_some_and(|d| d == "All"),
        field_manager: q.get("fieldManager").cloned(),
        force: q.get("force").is_some_and(|f| f == "true" || f == "1"),
    }
}

async fn read_body(req: Request<Body>) -> ApiResult<Bytes> {
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    let v: Value = if body
        .first()
        .is_some_and(|b| *b == b'{' || b.is_ascii_whitespace())
    {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))?
    } else {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    Ok(v)
}

fn crd_of(shared: &Shared, rt: &ResourceType) -> Option<Value> {
    if rt.group.is_empty() || !rt.group.contains('.') || rt.group.ends_with("k8s.io") {
        return None;
    }
    let crd_rt = shared
        .store
        .resource("apiextensions.k8s.io", "CustomResourceDefinition")?;
    shared
        .store
        .get(&crd_rt, "", &format!("{}.{}", rt.plural, rt.group))
        .ok()
}

fn object_response(
    shared: &Shared,
    headers: &HeaderMap,
    q: &Query,
    rt: &ResourceType,
    code: StatusCode,
    obj: &Value,
) -> Response<Body> {
    if wants_table(headers) {
        let cols = table::columns(rt, crd_of(shared, rt).as_ref());
        let include = IncludeObject::parse(q.get("includeObject").map(String::as_str));
        let t = table::table(
            &cols,
            std::slice::from_ref(obj),
            json!({"resourceVersion": obj["metadata"]["resourceVersion"]}),
            include,
        );
        return json_response_ct(code, &t, TABLE_CT);
    }
    json_response(code, obj)
}

async fn resource_request(
    shared: Arc<Shared>,
    req: Request<Body>,
    group: String,
    version: String,
    rest: Vec<String>,
) -> ApiResult<Response<Body>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("protobuf") {
        return Err(ApiError::new(
            Reason::UnsupportedMediaType,
            "the simulated API server accepts JSON and YAML bodies only (application/vnd.kubernetes.protobuf is not supported)",
        ));
    }
    let t = parse_target(&shared, &group, &version, &rest)?;
    let q = query(&req);
    let headers = req.headers().clone();
    let method = req.method().clone();
    let ns = t.namespace.clone().unwrap_or_default();
    let store = &shared.store;
    let rt = t.rt.clone();
    let status_only = t.sub.as_deref() == Some("status");
    match (&method, &t.name) {
        (&Method::GET, None) => {
            let opts = list_options(&q, &rt)?;
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return Ok(watch(
                    shared.clone(),
                    rt,
                    t.namespace,
                    opts,
                    &q,
                    wants_table(&headers),
                ));
            }
            let list = store.list(&rt, t.namespace.as_deref(), &opts)?;
            if wants_table(&headers) {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let cols = table::columns(&rt, crd_of(&shared, &rt).as_ref());
                let include = IncludeObject::parse(q.get("includeObject").map(String::as_str));
                return Ok(json_response_ct(
                    StatusCode::OK,
                    &table::table(&cols, &items, list["metadata"].clone(), include),
                    TABLE_CT,
                ));
            }
            Ok(json_response(StatusCode::OK, &list))
        }
        (&Method::GET, Some(name)) => {
            let obj = store.get(&rt, &ns, name)?;
            Ok(object_response(
                &shared,
                &headers,
                &q,
                &rt,
                StatusCode::OK,
                &obj,
            ))
        }
        (&Method::POST, None) => {
            if rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::new(
                    Reason::MethodNotAllowed,
                    "the server does not allow this method on the requested resource",
                ));
            }
            let body = parse_json(&read_body(req).await?)?;
            let obj = store.create(&rt, &ns, body, &write_options(&q))?;
            Ok(object_response(
                &shared,
                &headers,
                &q,
                &rt,
                StatusCode::CREATED,
                &obj,
            ))
        }
        (&Method::POST, Some(name)) if t.sub.as_deref() == Some("token") => {
            let body = parse_json(&read_body(req).await?)?;
            token_request(&shared, &rt, &ns, name, body)
        }
        (&Method::PUT, Some(name)) => {
            let body = parse_json(&read_body(req).await?)?;
            let obj = store.replace(&rt, &ns, name, body, status_only, &write_options(&q))?;
            Ok(object_response(
                &shared,
                &headers,
                &q,
                &rt,
                StatusCode::OK,
                &obj,
            ))
        }
        (&Method::PATCH, Some(name)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let kind = PatchKind::from_content_type(&ct)?;
            let body = read_body(req).await?;
            let (obj, created) =
                store.patch(&rt, &ns, name, kind, &body, status_only, &write_options(&q))?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(object_response(&shared, &headers, &q, &rt, code, &obj))
        }
        (&Method::DELETE, Some(name)) => {
            let body = read_body(req).await?;
            let opts = delete_options(&q, &body)?;
            let obj = store.delete(&rt, &ns, name, &opts)?;
            Ok(json_response(StatusCode::OK, &obj))
        }
        (&Method::DELETE, None) => {
            let lo = list_options(&q, &rt)?;
            let body = read_body(req).await?;
            let opts = delete_options(&q, &body)?;
            let list = store.delete_collection(&rt, t.namespace.as_deref(), &lo, &opts)?;
            Ok(json_response(StatusCode::OK, &list))
        }
        _ => Err(ApiError::new(
            Reason::MethodNotAllowed,
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn delete_options(q: &Query, body: &[u8]) -> ApiResult<DeleteOptions> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(body)?
    };
    let dry = q.get("dryRun").is_some_and(|d| d == "All")
        || b["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == "All"));
    let policy = q
        .get("propagationPolicy")
        .cloned()
        .or_else(|| b["propagationPolicy"].as_str().map(str::to_string));
    Ok(DeleteOptions {
        dry_run: dry,
        uid: b["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: b["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        orphan: policy.as_deref() == Some("Orphan")
            || b["orphanDependents"].as_bool() == Some(true),
    })
}

fn token_request(
    shared: &Shared,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    body: Value,
) -> ApiResult<Response<Body>> {
    shared.store.get(rt, ns, name)?;
    let token = shared
        .auth
        .issue(&format!("system:serviceaccount:{ns}:{name}"));
    let secs = body["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
    let exp = chrono::Utc::now() + chrono::Duration::seconds(secs);
    let mut resp = body;
    resp["apiVersion"] = json!("authentication.k8s.io/v1");
    resp["kind"] = json!("TokenRequest");
    resp["metadata"]["name"] = json!(name);
    resp["metadata"]["namespace"] = json!(ns);
    resp["status"] = json!({
        "token": token,
        "expirationTimestamp": exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    Ok(json_response(StatusCode::CREATED, &resp))
}

/// What a watcher sees of a change, after namespace and selector filtering: a MODIFIED that
/// makes an object stop (start) matching is a DELETED (ADDED), as on a real server.
fn filter_event(ev: &WatchEvent, ns: Option<&str>, opts: &ListOptions) -> Option<EventType> {
    if let Some(ns) = ns
        && ev.namespace != ns
    {
        return None;
    }
    let m = |o: &Value| opts.labels.matches(o) && opts.fields.matches(o);
    let now = m(&ev.object);
    match ev.kind {
        EventType::Modified => {
            let before = ev.prev.as_deref().is_some_and(m);
            match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            }
        }
        k => now.then_some(k),
    }
}

fn watch(
    shared: Arc<Shared>,
    rt: Arc<ResourceType>,
    ns: Option<String>,
    opts: ListOptions,
    q: &Query,
    as_table: bool,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let rv = q.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = q
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let send_initial = q.get("sendInitialEvents").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let include = IncludeObject::parse(q.get("includeObject").map(String::as_str));
    let cols = as_table.then(|| table::columns(&rt, crd_of(&shared, &rt).as_ref()));
    let start = shared.store.watch(&rt.group_resource(), &rv, send_initial);
    let bookmark_every = shared.opts.bookmark_interval;
    tokio::spawn(async move {
        let render = |kind: &str, obj: &Value| -> Bytes {
            let object = match &cols {
                Some(cols) => table::table(cols, std::slice::from_ref(obj), json!({}), include),
                None => obj.clone(),
            };
            let mut line = json!({"type": kind, "object": object}).to_string();
            line.push('\n');
            Bytes::from(line)
        };
        let present = |obj: &Value| -> Value {
            let mut o = obj.clone();
            o["apiVersion"] = json!(rt.api_version());
            o["kind"] = json!(rt.kind);
            o
        };
        let mut start = match start {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Ok(render("ERROR", &e.to_status()))).await;
                return;
            }
        };
        for ev in std::mem::take(&mut start.initial) {
            if let Some(kind) = filter_event(&ev, ns.as_deref(), &opts)
                && tx
                    .send(Ok(render(kind.as_str(), &present(&ev.object))))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if send_initial {
            let bm = json!({
                "kind": rt.kind, "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": start.rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}
            });
            if tx.send(Ok(render("BOOKMARK", &bm))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.tick().await;
        let gr = rt.group_resource();
        loop {
            tokio::select! {
                ev = start.rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.gr != gr {
                            continue;
                        }
                        if let Some(kind) = filter_event(&ev, ns.as_deref(), &opts)
                            && tx.send(Ok(render(kind.as_str(), &present(&ev.object)))).await.is_err() {
                                return;
                            }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::new(Reason::Expired, "watch fell behind: too old resource version");
                        let _ = tx.send(Ok(render("ERROR", &e.to_status()))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    if let Some(rv) = shared.store.bookmark_rv(&start.rx) {
                        let bm = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}});
                        if tx.send(Ok(render("BOOKMARK", &bm))).await.is_err() {
                            return;
                        }
                    }
                }
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    let ct = if as_table {
        TABLE_CT
    } else {
        "application/json"
    };
    if let Ok(v) = header::HeaderValue::from_str(ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, private"),
    );
    resp
}
