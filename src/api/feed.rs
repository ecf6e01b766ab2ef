//! A run's feed for online training (issue 24): `GET /runs/{run_id}/groups` hands a
//! named consumer the run's complete groups it has not acknowledged, in order, waiting
//! up to `wait` seconds for one; `POST /runs/{run_id}/groups/ack` records that it took
//! them (`GroupConsumed`), so they never come to it again, across restarts of the
//! consumer and of the server; `POST /runs/{run_id}/policy` switches the model
//! endpoint and version for every later turn (`PolicyUpdated`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use actix_web::{web, HttpResponse};
use deserr::Deserr;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::body::{read, BodyErrors, Invalid, Required};
use super::export::{provenance, task_facts_of, TaskFacts, TaskKey};
use super::validate::Checker;
use super::AppState;
use crate::domain::feed::{is_stale, Group};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::projections::{RolloutContent, RunView, Views};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/runs/{run_id}/groups").route(web::get().to(groups)))
        .service(web::resource("/runs/{run_id}/groups/ack").route(web::post().to(ack)))
        .service(web::resource("/runs/{run_id}/policy").route(web::post().to(policy)));
}

/// The longest a consumer may wait for a group in one request.
const MAX_WAIT_SECS: i64 = 60;
const MAX_GROUPS_PER_ANSWER: i64 = 100;
/// How long a waiting consumer lets events gather before it looks again.
const POLL_SETTLE: Duration = Duration::from_millis(10);

/// The feed's part of a run's status.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FeedStatus {
    pub groups_scheduled: u32,
    pub groups_complete: u32,
    /// Complete groups no consumer has acknowledged.
    pub groups_unconsumed: u32,
    /// A continuous run's cap on them.
    pub max_unconsumed_groups: Option<u32>,
    /// The run starts no rollout until a consumer acknowledges a group.
    pub waiting_for_consumer: bool,
    /// The policy in force (the launch's `policy_version`, then the latest update's).
    pub policy_version: Option<String>,
    /// Policy updates so far (0: the launch's policy is in force).
    pub policy_ordinal: u32,
    /// Consumer name → the groups it acknowledged.
    pub consumers: std::collections::BTreeMap<String, usize>,
}

impl FeedStatus {
    pub fn of(run: &RunView) -> FeedStatus {
        let complete = run.groups.complete();
        // Only complete groups can be acknowledged (the ack checks).
        let unconsumed = complete.saturating_sub(run.feed.acknowledged.len() as u32);
        let max = run.feed.continuous.map(|c| c.max_unconsumed_groups);
        FeedStatus {
            groups_scheduled: run.groups.len() as u32,
            groups_complete: complete,
            groups_unconsumed: unconsumed,
            max_unconsumed_groups: max,
            // Rollouts are queued or groups still to be drawn, and none may start.
            waiting_for_consumer: (run.counts.pending > 0 || run.open())
                && max.is_some_and(|m| unconsumed >= m),
            policy_version: run
                .policy_version(run.feed.policy_ordinal())
                .map(String::from),
            policy_ordinal: run.feed.policy_ordinal(),
            consumers: run
                .feed
                .consumed
                .iter()
                .map(|(name, groups)| (name.clone(), groups.len()))
                .collect(),
        }
    }
}

/// A consumer name: 1–100 letters, digits, `_`, `.` or `-`.
fn valid_consumer(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

const CONSUMER_MSG: &str = "A consumer name is 1–100 letters, digits, '_', '.' or '-'";

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupsAnswer {
    pub run_id: String,
    pub consumer: String,
    /// Complete groups this consumer has not acknowledged, by id (a later group that
    /// completes first comes before an earlier one still running).
    #[schema(value_type = Vec<Object>)]
    pub groups: Vec<Box<RawValue>>,
    /// The run draws no more groups and the consumer acknowledged every one.
    pub done: bool,
}

/// What one poll found: the groups to hand out (index, group) and whether the feed is
/// done for this consumer.
struct Found {
    ready: Vec<(u32, Group)>,
    done: bool,
}

fn find(views: &Views, run: &RunView, consumer: &str, after: Option<u32>, limit: usize) -> Found {
    let groups = views.groups(run);
    let empty = BTreeSet::new();
    let acked = run.feed.consumed.get(consumer).unwrap_or(&empty);
    // A consumer usually acknowledges in order: when it has taken groups 0..n, the
    // search starts at n, so a long run's poll does not walk its whole history.
    let prefix = match acked.last() {
        Some(&last) if last as usize + 1 == acked.len() => acked.len(),
        _ => 0,
    };
    let first = prefix.max(after.map_or(0, |a| a as usize + 1));
    let ready: Vec<(u32, Group)> = groups
        .iter()
        .enumerate()
        .skip(first)
        .filter(|(i, _)| !acked.contains(&(*i as u32)) && run.groups.is_complete(*i as u32))
        .take(limit)
        .map(|(i, g)| (i as u32, g.clone()))
        .collect();
    // Only existing groups can be acknowledged (the ack checks), so this is "all".
    let done = run.over() && acked.len() >= groups.len();
    Found { ready, done }
}

#[utoipa::path(get, path = "/runs/{run_id}/groups", tag = "feed", summary = "Complete groups a consumer has not acknowledged, waiting for one (long poll)", params(("run_id" = String, Path, description = "The run"), ("consumer" = String, Query, description = "The consumer's name: 1–100 letters, digits, '_', '.' or '-'"), ("wait" = Option<u32>, Query, description = "Seconds to wait for a group when none is ready, 0–60 (20)"), ("limit" = Option<u32>, Query, description = "Groups at most, 1–100 (16)"), ("after" = Option<u32>, Query, description = "Only groups with a larger id: a consumer holding groups it has not acknowledged yet waits for new ones")), responses((status = 200, body = GroupsAnswer), (status = 404, description = "No such run", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn groups(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let mut c = Checker::default();
    let mut consumer = None;
    let mut wait = 20;
    let mut limit = 16;
    let mut after = None;
    for (key, value) in query.iter() {
        match key.as_str() {
            "consumer" if valid_consumer(value) => consumer = Some(value.clone()),
            "consumer" => c.push(
                &["query"],
                "consumer",
                CONSUMER_MSG,
                "string_pattern_mismatch",
            ),
            "wait" => wait = c.query_int("wait", value, 0, MAX_WAIT_SECS).unwrap_or(wait),
            "after" => {
                after = c
                    .query_int("after", value, 0, u32::MAX as i64)
                    .map(|n| n as u32)
            }
            "limit" => {
                limit = c
                    .query_int("limit", value, 1, MAX_GROUPS_PER_ANSWER)
                    .unwrap_or(limit)
            }
            _ => {}
        }
    }
    if !query.iter().any(|(k, _)| k == "consumer") {
        c.push(&["query"], "consumer", "Field required", "missing");
    }
    c.finish()?;
    let Some(consumer) = consumer else {
        return Err(ApiError::validation(vec![]));
    };
    state.sync().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait as u64);
    let found = loop {
        let (found, seen) = state.projections.read(|views| {
            let run = views
                .run(&run_id)
                .ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
            Ok::<_, ApiError>((
                find(views, run, &consumer, after, limit as usize),
                views.next_position(),
            ))
        })?;
        if !found.ready.is_empty() || found.done {
            break found;
        }
        // Wake on the next event the views take in, or give up at the deadline; then
        // let more events in before looking again: a busy log would otherwise have
        // every waiting consumer scan its groups thousands of times a second (the
        // feed cost the oracle a third of its throughput so).
        let next = state.projections.wait_for(seen);
        if tokio::time::timeout_at(deadline, next).await.is_err() {
            break found;
        }
        let settle = tokio::time::Instant::now() + POLL_SETTLE;
        tokio::time::sleep_until(settle.min(deadline)).await;
    };
    let groups = group_bodies(&state, &run_id, found.ready).await?;
    Ok(HttpResponse::Ok().json(GroupsAnswer {
        run_id,
        consumer,
        groups,
        done: found.done,
    }))
}

/// Each group with its rollouts' rewards, turns' policies and, for a run that
/// recorded token ids, the `tokens` export line of each.
async fn group_bodies(
    state: &AppState,
    run_id: &str,
    ready: Vec<(u32, Group)>,
) -> Result<Vec<Box<RawValue>>, ApiError> {
    let mut keys: Vec<TaskKey> = ready
        .iter()
        .map(|(_, g)| (g.task_id.clone(), g.instance_seed))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let facts = state
        .projections
        .read(|views| {
            views
                .run(run_id)
                .map(|run| task_facts_of(state, run, &keys))
        })
        .unwrap_or_default();
    let mut bodies = Vec::with_capacity(ready.len());
    for (index, group) in ready {
        let mut contents = Vec::with_capacity(group.rollout_ids.len());
        for id in &group.rollout_ids {
            let content = match state.contents.take(id) {
                Some(content) => content,
                None => state.rollout_content(id).await?,
            };
            contents.push(content);
        }
        let body = state.projections.read(|views| {
            let run = views.run(run_id)?;
            group_body(views, run, index, &group, &contents, &facts)
        });
        bodies.extend(body);
    }
    Ok(bodies)
}

/// One group as a consumer receives it: written straight from the rollouts' content,
/// the `tokens` line spliced in as written (no JSON tree on the way: a busy feed
/// otherwise spends its time building and dropping them).
#[derive(Serialize)]
struct GroupBody<'a> {
    group_id: u32,
    task_id: &'a str,
    instance_seed: u64,
    rollouts: Vec<RolloutBody<'a>>,
    stale_count: usize,
    restarted_count: usize,
    restarted: &'a [String],
}

#[derive(Serialize)]
struct RolloutBody<'a> {
    rollout_id: &'a str,
    status: crate::domain::rollout::RolloutStatus,
    reward: Option<f64>,
    seed: u64,
    stale: bool,
    policy_versions: Vec<Option<&'a str>>,
    tokens: Option<Box<RawValue>>,
    messages: &'a [crate::domain::chat::Message],
    provenance: Value,
}

fn group_body(
    views: &Views,
    run: &RunView,
    index: u32,
    group: &Group,
    contents: &[RolloutContent],
    facts: &HashMap<TaskKey, TaskFacts>,
) -> Option<Box<RawValue>> {
    let recorded = super::token_export::recorded(&run.model);
    let staleness = run.feed.continuous.and_then(|c| c.max_staleness);
    let mut stale_count = 0;
    let rollouts: Vec<RolloutBody> = group
        .rollout_ids
        .iter()
        .zip(contents)
        .filter_map(|(id, content)| {
            let r = views.rollout(id)?;
            let stale = match (content.policies.first(), content.policies.iter().max()) {
                (Some(&first), Some(&last)) => is_stale(first, last, staleness),
                _ => false,
            };
            stale_count += usize::from(stale);
            let task = facts.get(&(r.task_id.clone(), r.instance_seed));
            let provenance = provenance(run, r, task);
            let tokens = recorded
                .then(|| {
                    let line = super::token_export::line(content, r.score(), provenance.clone());
                    RawValue::from_string(line.trim_end().to_string()).ok()
                })
                .flatten();
            Some(RolloutBody {
                rollout_id: &r.rollout_id,
                status: r.status,
                reward: r.score(),
                seed: r.seed,
                stale,
                policy_versions: content
                    .policies
                    .iter()
                    .map(|&ordinal| run.policy_version(ordinal))
                    .collect(),
                tokens,
                messages: &content.trajectory,
                provenance,
            })
        })
        .collect();
    let body = GroupBody {
        group_id: index,
        task_id: &group.task_id,
        instance_seed: group.instance_seed,
        rollouts,
        stale_count,
        restarted_count: group.restarted.len(),
        restarted: &group.restarted,
    };
    serde_json::value::to_raw_value(&body).ok()
}

#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors, deny_unknown_fields)]
pub struct AckBody {
    /// The consumer's name (as in `GET …/groups`).
    #[deserr(default)]
    #[schema(value_type = String)]
    pub consumer: Required<String>,
    /// Complete groups it took.
    #[deserr(default, try_from(Option<Vec<Value>>) = group_id_list -> Invalid)]
    #[schema(value_type = Vec<u32>)]
    pub group_ids: Required<Vec<u32>>,
}

/// Group ids, one message for the list.
fn group_id_list(items: Option<Vec<Value>>) -> Result<Required<Vec<u32>>, Invalid> {
    let Some(items) = items else {
        return Ok(Required(None));
    };
    items
        .iter()
        .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect::<Option<Vec<u32>>>()
        .map(|ids| Required(Some(ids)))
        .ok_or_else(|| {
            Invalid::new(
                "Input should be a list of group ids (non-negative integers)",
                "list_type",
            )
        })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AckAnswer {
    pub run_id: String,
    pub consumer: String,
    /// Recorded now.
    pub acknowledged: Vec<u32>,
    /// Recorded before: nothing is acknowledged twice.
    pub already_acknowledged: Vec<u32>,
}

#[utoipa::path(post, path = "/runs/{run_id}/groups/ack", tag = "feed", summary = "Acknowledge groups a consumer took: they never come to it again", request_body = AckBody, params(("run_id" = String, Path, description = "The run")), responses((status = 200, body = AckAnswer), (status = 404, description = "No such run", body = ErrorBody), (status = 422, description = "Invalid input, an unknown or incomplete group named", body = ErrorBody)))]
async fn ack(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let (body, mut c) = read::<AckBody>(&body)?;
    let consumer = c.required(&["body"], "consumer", body.consumer.0);
    if consumer.as_deref().is_some_and(|n| !valid_consumer(n)) {
        c.push(
            &["body"],
            "consumer",
            CONSUMER_MSG,
            "string_pattern_mismatch",
        );
    }
    let ids = c.required(&["body"], "group_ids", body.group_ids.0);
    c.finish()?;
    let (Some(consumer), Some(ids)) = (consumer, ids) else {
        return Err(ApiError::validation(vec![]));
    };
    state.sync().await;
    let (new, already) = state.projections.read(|views| {
        let run = views
            .run(&run_id)
            .ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
        let groups = views.groups(run);
        let acked = run.feed.consumed.get(&consumer);
        let mut c = Checker::default();
        let mut new = BTreeSet::new();
        let mut already = BTreeSet::new();
        for (i, &id) in ids.iter().enumerate() {
            let loc = i.to_string();
            match groups.get(id as usize) {
                None => c.push(
                    &["body", "group_ids"],
                    &loc,
                    format!(
                        "Group {id} does not exist: the run has {} groups",
                        groups.len()
                    ),
                    "value_error",
                ),
                Some(_) if !run.groups.is_complete(id) => c.push(
                    &["body", "group_ids"],
                    &loc,
                    format!("Group {id} is not complete: some of its rollouts have not finished"),
                    "value_error",
                ),
                Some(_) if acked.is_some_and(|a| a.contains(&id)) => {
                    already.insert(id);
                }
                Some(_) => {
                    new.insert(id);
                }
            }
        }
        c.finish()?;
        Ok::<_, ApiError>((new, already))
    })?;
    let acknowledged: Vec<u32> = new.into_iter().collect();
    if !acknowledged.is_empty() {
        state
            .gym
            .consume_groups(&run_id, &consumer, acknowledged.clone())
            .await?;
        state.sync().await;
    }
    Ok(HttpResponse::Ok().json(AckAnswer {
        run_id,
        consumer,
        acknowledged,
        already_acknowledged: already.into_iter().collect(),
    }))
}

#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors, deny_unknown_fields)]
pub struct PolicyBody {
    /// The trainer's weights version (free text, 1–200 characters).
    #[deserr(default)]
    #[schema(value_type = String)]
    pub version: Required<String>,
    /// The model server of this version (default: the endpoint in force).
    #[deserr(default)]
    pub base_url: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyAnswer {
    pub run_id: String,
    pub version: String,
    /// Which update this is (the launch's policy is 0).
    pub ordinal: u32,
}

#[utoipa::path(post, path = "/runs/{run_id}/policy", tag = "feed", summary = "Switch the model endpoint and policy version for every later turn", request_body = PolicyBody, params(("run_id" = String, Path, description = "The run")), responses((status = 200, body = PolicyAnswer), (status = 404, description = "No such run", body = ErrorBody), (status = 409, description = "The run changed meanwhile; try again", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn policy(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let (body, mut c) = read::<PolicyBody>(&body)?;
    let version = c.required(&["body"], "version", body.version.0);
    if version
        .as_deref()
        .is_some_and(|v| v.is_empty() || v.chars().count() > 200)
    {
        c.push(
            &["body"],
            "version",
            "A version is 1–200 characters",
            "string_too_long",
        );
    }
    let base_url = body.base_url;
    if let Some(url) = &base_url {
        if let Err(e) = crate::net::parse_http_url(url) {
            c.push(&["body"], "base_url", e.to_string(), "url_parsing");
        }
    }
    c.finish()?;
    let Some(version) = version else {
        return Err(ApiError::validation(vec![]));
    };
    let known = state.projections.read(|views| {
        views.run(&run_id).map(|run| {
            (
                run.model.provider.clone(),
                run.model.tool_server_url.is_some(),
            )
        })
    });
    let Some((provider, _)) = known else {
        return Err(ApiError::new(ErrorCode::RunNotFound, "Run not found"));
    };
    if base_url.is_some() && provider == "builtin" {
        return Err(ApiError::invalid_field(
            &["body", "base_url"],
            "The builtin agents have no endpoint to switch; give only a version",
        ));
    }
    let ordinal = state
        .gym
        .update_policy(&run_id, version.clone(), base_url)
        .await?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(PolicyAnswer {
        run_id,
        version,
        ordinal,
    }))
}
