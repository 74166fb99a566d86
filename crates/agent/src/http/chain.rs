//! `/v1/discovery-chain/:service`: the compiled discovery chain of a service —
//! which resolver applies, which target (service, subset, datacenter) it
//! resolves to, and where it fails over — shaped like Consul's
//! `CompiledDiscoveryChain`. Sidecars follow it for their upstreams.
//!
//! meshgate compiles resolvers only (`service-router` and `service-splitter`
//! are not implemented), so a chain is a single resolver node.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::Method;
use meshgate_acl::{Access, Resource};
use meshgate_config_entries::{self as ce, ConfigEntry, ServiceResolver};
use meshgate_state::{State, Table};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    AclRule, ApiError, ApiResult, Ctx, Route, bare_denied, blocking, handler, json_read, route,
};

const TABLES: &[Table] = &[Table::Config, Table::Ca];
/// Connect timeout of a target whose resolver sets none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Redirects followed before a chain is declared circular.
const MAX_REDIRECTS: usize = 8;

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/discovery-chain/{*service}",
            AclRule::Handler,
            handler!(read),
        ),
        route(
            Method::POST,
            "/v1/discovery-chain/{*service}",
            AclRule::Handler,
            handler!(read),
        ),
    ]
}

/// The POST body: overrides applied while compiling.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Overrides {
    override_mesh_gateway: Option<Value>,
    override_protocol: String,
    override_connect_timeout: Option<Value>,
}

fn parse_timeout(v: &Value) -> Result<Duration, ApiError> {
    match v {
        Value::Number(n) => Ok(Duration::from_nanos(n.as_u64().unwrap_or(0))),
        Value::String(s) => meshgate_types::duration::parse(s).map_err(|e| {
            ApiError::bad_request(format!(
                "Request decoding failed: invalid OverrideConnectTimeout {s:?}: {e}"
            ))
        }),
        _ => Err(ApiError::bad_request(
            "Request decoding failed: OverrideConnectTimeout must be a duration",
        )),
    }
}

async fn read(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).trim_matches('/').to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing chain name"));
    }
    let opts = ctx.query_options()?;
    if !ctx
        .identity()?
        .allows(Resource::Service, Access::Read, &name)
    {
        return Err(bare_denied());
    }
    let mut over = Overrides::default();
    if ctx.method == Method::POST && !ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        over = serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("Request decoding failed: {e}")))?;
    }
    let _ = &over.override_mesh_gateway;
    let timeout = over
        .override_connect_timeout
        .as_ref()
        .map(parse_timeout)
        .transpose()?
        .filter(|d| !d.is_zero());
    let dc = match ctx.query.get("compile-dc") {
        Some(d) if !d.is_empty() => d.to_string(),
        _ => ctx.agent.config.datacenter.clone(),
    };
    let protocol = over.override_protocol.to_ascii_lowercase();
    let (idx, chain) = blocking(&ctx, &opts, TABLES, |st| {
        let t = st.tables();
        let c = Compiler {
            st,
            dc: &dc,
            trust_domain: trust_domain(st),
            timeout,
        }
        .compile(&name, &protocol);
        (t.config.max(t.ca).max(1), c)
    })
    .await;
    let chain = chain.map_err(ApiError::internal)?;
    Ok(json_read(&ctx, &opts, idx, &json!({ "Chain": chain })))
}

fn trust_domain(st: &State) -> String {
    st.ca()
        .1
        .map(|c| meshgate_ca::trust_domain(&c.cluster_id))
        .unwrap_or_else(|| "consul".into())
}

/// One resolved target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub id: String,
    pub service: String,
    pub subset: String,
    pub datacenter: String,
    pub filter: String,
    pub only_passing: bool,
    pub connect_timeout: Duration,
    pub sni: String,
}

impl Target {
    fn to_json(&self) -> Value {
        let mut subset = Map::new();
        if !self.filter.is_empty() {
            subset.insert("Filter".into(), json!(self.filter));
        }
        if self.only_passing {
            subset.insert("OnlyPassing".into(), json!(true));
        }
        let mut o = Map::new();
        o.insert("ID".into(), json!(self.id));
        o.insert("Service".into(), json!(self.service));
        if !self.subset.is_empty() {
            o.insert("ServiceSubset".into(), json!(self.subset));
        }
        o.insert("Namespace".into(), json!("default"));
        o.insert("Partition".into(), json!("default"));
        o.insert("Datacenter".into(), json!(self.datacenter));
        o.insert("MeshGateway".into(), json!({}));
        o.insert("Subset".into(), Value::Object(subset));
        o.insert("TransparentProxy".into(), json!({}));
        o.insert(
            "ConnectTimeout".into(),
            json!(meshgate_types::duration::format(self.connect_timeout)),
        );
        o.insert("SNI".into(), json!(self.sni));
        o.insert("Name".into(), json!(self.sni));
        Value::Object(o)
    }
}

/// Compiles chains against one state view.
pub struct Compiler<'a> {
    pub st: &'a State,
    pub dc: &'a str,
    pub trust_domain: String,
    /// `OverrideConnectTimeout`.
    pub timeout: Option<Duration>,
}

impl Compiler<'_> {
    fn resolver(&self, service: &str) -> Option<&ServiceResolver> {
        match self.st.config_entry(ce::SERVICE_RESOLVER, service).1 {
            Some(ConfigEntry::ServiceResolver(r)) => Some(r),
            _ => None,
        }
    }

    fn protocol(&self, service: &str) -> String {
        if let Some(ConfigEntry::ServiceDefaults(sd)) =
            self.st.config_entry(ce::SERVICE_DEFAULTS, service).1
            && !sd.protocol.is_empty()
        {
            return sd.protocol.clone();
        }
        if let Some(ConfigEntry::ProxyDefaults(pd)) =
            self.st.config_entry(ce::PROXY_DEFAULTS, "global").1
            && let Some(p) = pd
                .config
                .as_ref()
                .and_then(|c| c.get("protocol"))
                .and_then(Value::as_str)
            && !p.is_empty()
        {
            return p.to_ascii_lowercase();
        }
        "tcp".into()
    }

    /// Follows redirects and default subsets to a target.
    fn resolve(&self, service: &str, subset: &str, dc: &str) -> Result<Target, String> {
        let (mut service, mut subset, mut dc) =
            (service.to_string(), subset.to_string(), dc.to_string());
        for _ in 0..MAX_REDIRECTS {
            let r = self.resolver(&service);
            if let Some(red) = r.and_then(|r| r.redirect.as_ref())
                && (!red.service.is_empty()
                    || !red.datacenter.is_empty()
                    || !red.service_subset.is_empty())
            {
                let next_service = if red.service.is_empty() {
                    service.clone()
                } else {
                    red.service.clone()
                };
                let next_dc = if red.datacenter.is_empty() {
                    dc.clone()
                } else {
                    red.datacenter.clone()
                };
                let next_subset = red.service_subset.clone();
                if (
                    next_service.as_str(),
                    next_subset.as_str(),
                    next_dc.as_str(),
                ) == (service.as_str(), subset.as_str(), dc.as_str())
                {
                    break;
                }
                (service, subset, dc) = (next_service, next_subset, next_dc);
                continue;
            }
            if subset.is_empty()
                && let Some(r) = r
            {
                subset = r.default_subset.clone();
            }
            let (filter, only_passing) = match (r, subset.as_str()) {
                (_, "") => (String::new(), false),
                (Some(r), s) => match r.subsets.get(s) {
                    Some(def) => (def.filter.clone(), def.only_passing),
                    None => {
                        return Err(format!(
                            "service {service:?} does not have a subset named {s:?}"
                        ));
                    }
                },
                (None, s) => {
                    return Err(format!(
                        "service {service:?} does not have a subset named {s:?}"
                    ));
                }
            };
            let timeout = self.timeout.unwrap_or_else(|| {
                r.and_then(|r| r.connect_timeout.to_std())
                    .filter(|d| !d.is_zero())
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
            });
            let id = if subset.is_empty() {
                format!("{service}.default.default.{dc}")
            } else {
                format!("{subset}.{service}.default.default.{dc}")
            };
            let sni = meshgate_ca::service_sni_with_subset(
                &subset,
                &service,
                "default",
                &dc,
                &self.trust_domain,
            );
            return Ok(Target {
                id,
                service,
                subset,
                datacenter: dc,
                filter,
                only_passing,
                connect_timeout: timeout,
                sni,
            });
        }
        Err(format!(
            "detected circular resolver redirect for {service:?}"
        ))
    }

    /// The failover targets of `primary`, in order.
    fn failover(&self, service: &str, primary: &Target) -> Result<Vec<Target>, String> {
        let Some(r) = self.resolver(service) else {
            return Ok(Vec::new());
        };
        let Some(f) = r
            .failover
            .get(&primary.subset)
            .or_else(|| r.failover.get("*"))
        else {
            return Ok(Vec::new());
        };
        let svc = |s: &str| {
            if s.is_empty() {
                primary.service.clone()
            } else {
                s.to_string()
            }
        };
        let mut out = Vec::new();
        if !f.targets.is_empty() {
            for t in &f.targets {
                let dc = if t.datacenter.is_empty() {
                    self.dc
                } else {
                    &t.datacenter
                };
                out.push(self.resolve(&svc(&t.service), &t.service_subset, dc)?);
            }
        } else if !f.datacenters.is_empty() {
            for dc in &f.datacenters {
                out.push(self.resolve(&svc(&f.service), &f.service_subset, dc)?);
            }
        } else {
            out.push(self.resolve(&svc(&f.service), &f.service_subset, self.dc)?);
        }
        let mut seen = vec![primary.id.clone()];
        out.retain(|t| {
            if seen.contains(&t.id) {
                false
            } else {
                seen.push(t.id.clone());
                true
            }
        });
        Ok(out)
    }

    /// The primary target and its failover targets.
    pub fn targets(&self, service: &str) -> Result<(Target, Vec<Target>), String> {
        let primary = self.resolve(service, "", self.dc)?;
        let failover = self.failover(&primary.service, &primary)?;
        Ok((primary, failover))
    }

    /// The chain as the API shapes it.
    pub fn compile(&self, service: &str, protocol_override: &str) -> Result<Value, String> {
        let (primary, failover) = self.targets(service)?;
        let is_default = self.resolver(service).is_none();
        let protocol = if protocol_override.is_empty() {
            self.protocol(service)
        } else {
            protocol_override.to_string()
        };
        let mut resolver = Map::new();
        if is_default {
            resolver.insert("Default".into(), json!(true));
        }
        resolver.insert(
            "ConnectTimeout".into(),
            json!(meshgate_types::duration::format(primary.connect_timeout)),
        );
        resolver.insert("Target".into(), json!(primary.id));
        if !failover.is_empty() {
            resolver.insert(
                "Failover".into(),
                json!({ "Targets": failover.iter().map(|t| t.id.clone()).collect::<Vec<_>>() }),
            );
        }
        let node_name = format!("resolver:{}", primary.id);
        let mut targets = BTreeMap::new();
        targets.insert(primary.id.clone(), primary.to_json());
        for t in &failover {
            targets.insert(t.id.clone(), t.to_json());
        }
        let mut chain = Map::new();
        chain.insert("ServiceName".into(), json!(service));
        chain.insert("Namespace".into(), json!("default"));
        chain.insert("Partition".into(), json!("default"));
        chain.insert("Datacenter".into(), json!(self.dc));
        if is_default {
            chain.insert("Default".into(), json!(true));
        }
        chain.insert("Protocol".into(), json!(protocol));
        chain.insert("StartNode".into(), json!(node_name));
        chain.insert(
            "Nodes".into(),
            json!({ node_name.clone(): {
                "Type": "resolver",
                "Name": primary.id,
                "Resolver": Value::Object(resolver),
            }}),
        );
        chain.insert("Targets".into(), json!(targets));
        chain.insert("AutoVirtualIPs".into(), Value::Null);
        chain.insert("ManualVirtualIPs".into(), Value::Null);
        Ok(Value::Object(chain))
    }
}
