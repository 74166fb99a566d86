//! `/v1/coordinate/*`: network coordinates.

use axum::http::Method;
use meshgate_acl::{Access, Resource};
use meshgate_state::{Command, Coord, CoordinateEntry, Table};
use serde::{Deserialize, Serialize};

use super::catalog::decode_body;
use super::{
    AclFilter, AclRule, ApiError, ApiResult, Ctx, Route, blocking, handler, json, json_read, route,
};

pub(super) fn routes() -> Vec<Route> {
    vec![
        route(
            Method::GET,
            "/v1/coordinate/datacenters",
            AclRule::None,
            handler!(datacenters),
        ),
        route(
            Method::GET,
            "/v1/coordinate/nodes",
            AclRule::Handler,
            handler!(nodes),
        ),
        route(
            Method::GET,
            "/v1/coordinate/node/{node}",
            AclRule::Param(Resource::Node, Access::Read, 0),
            handler!(node),
        ),
        route(
            Method::PUT,
            "/v1/coordinate/update",
            AclRule::Handler,
            handler!(update),
        ),
    ]
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WanCoord {
    node: String,
    coord: Coord,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DcCoords {
    datacenter: String,
    #[serde(rename = "AreaID")]
    area_id: String,
    coordinates: Vec<WanCoord>,
}

async fn datacenters(ctx: Ctx) -> ApiResult {
    let a = &ctx.agent;
    let servers: Vec<WanCoord> = {
        let st = a.store.read();
        st.coordinates()
            .1
            .into_iter()
            .filter(|c| {
                st.node_services(&c.node)
                    .1
                    .is_some_and(|(_, svcs)| svcs.iter().any(|s| s.id == "consul"))
            })
            .map(|c| WanCoord {
                node: format!("{}.{}", c.node, a.config.datacenter),
                coord: c.coord.clone(),
            })
            .collect()
    };
    Ok(json(
        &ctx,
        &[DcCoords {
            datacenter: a.config.datacenter.clone(),
            area_id: "wan".into(),
            coordinates: servers,
        }],
    ))
}

async fn nodes(ctx: Ctx) -> ApiResult {
    let opts = ctx.query_options()?;
    let segment = ctx.query.get("segment").map(str::to_string);
    let (idx, list) = blocking(&ctx, &opts, &[Table::Coordinates], |st| {
        let (idx, l) = st.coordinates();
        let list: Vec<CoordinateEntry> = l
            .into_iter()
            .filter(|c| segment.as_ref().is_none_or(|s| *s == c.segment))
            .cloned()
            .collect();
        (idx, list)
    })
    .await;
    let mut acl = AclFilter::new(&ctx)?;
    let list: Vec<CoordinateEntry> = list
        .into_iter()
        .filter(|c| acl.node_service(&c.node, None))
        .collect();
    let mut r = json_read(&ctx, &opts, idx, &list);
    acl.mark(&mut r);
    Ok(r)
}

async fn node(ctx: Ctx) -> ApiResult {
    let name = ctx.param(0).to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    let opts = ctx.query_options()?;
    let (idx, list) = blocking(&ctx, &opts, &[Table::Coordinates], |st| {
        let (idx, l) = st.node_coordinates(&name);
        (idx, l.into_iter().cloned().collect::<Vec<_>>())
    })
    .await;
    if list.is_empty() {
        let mut r = axum::response::IntoResponse::into_response(axum::http::StatusCode::NOT_FOUND);
        super::set_read_headers(&mut r, &opts, idx);
        return Ok(r);
    }
    Ok(json_read(&ctx, &opts, idx, &list))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateBody {
    node: String,
    segment: String,
    datacenter: String,
    coord: Option<Coord>,
}

async fn update(ctx: Ctx) -> ApiResult {
    ctx.check_dc()?;
    let b: UpdateBody = decode_body(&ctx)?;
    let _ = b.datacenter;
    if b.node.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    ctx.require(Resource::Node, Access::Write, &b.node)?;
    let Some(coord) = b.coord else {
        return Err(ApiError::bad_request("Missing coordinate"));
    };
    if coord.vec.len() != 8
        || !coord
            .vec
            .iter()
            .chain([&coord.error, &coord.adjustment, &coord.height])
            .all(|v| v.is_finite())
    {
        return Err(ApiError::bad_request(
            "Invalid coordinate: it must have 8 finite dimensions",
        ));
    }
    ctx.agent
        .store
        .write(Command::CoordinateUpdate(vec![CoordinateEntry {
            node: b.node,
            segment: b.segment,
            coord,
        }]))
        .await?;
    Ok(json(&ctx, &true))
}
