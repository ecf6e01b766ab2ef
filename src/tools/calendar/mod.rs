//! The calendar server: the company's shared calendar, with events, attendees and
//! free/busy look-ups. All times are UTC. Creating or moving an event onto an
//! attendee's existing confirmed event is a conflict error unless `allow_conflict`.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    fmt_datetime, is_email, next_id, parse_datetime, spec, Ctx, Params, ToolServer, ToolSpec,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub event_id: String,
    pub title: String,
    /// UTC, `2026-03-04T10:30:00Z`.
    pub start: String,
    pub end: String,
    pub organizer: String,
    pub attendees: Vec<String>,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub description: String,
    /// `confirmed` or `cancelled`.
    pub status: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
}

impl Event {
    fn span(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let parse = |s: &str| parse_datetime(s).unwrap_or(DateTime::<Utc>::MIN_UTC);
        (parse(&self.start), parse(&self.end))
    }

    fn has(&self, who: &str) -> bool {
        self.attendees.iter().any(|a| a.eq_ignore_ascii_case(who))
    }

    fn brief(&self) -> Value {
        json!({"event_id": self.event_id, "title": self.title, "start": self.start, "end": self.end})
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarServer {
    /// The account the agent acts as; it organizes the events it creates.
    pub owner: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

impl CalendarServer {
    pub fn from_seed(seed: &Value) -> Result<Self, String> {
        let mut server: CalendarServer = if seed.as_object().is_some_and(Map::is_empty) {
            CalendarServer {
                owner: "agent@example.com".into(),
                events: Vec::new(),
            }
        } else {
            serde_json::from_value(seed.clone()).map_err(|e| e.to_string())?
        };
        for e in &mut server.events {
            let (Some(s), Some(t)) = (parse_datetime(&e.start), parse_datetime(&e.end)) else {
                return Err(format!(
                    "event {} has an unreadable start or end",
                    e.event_id
                ));
            };
            if t <= s {
                return Err(format!("event {} ends before it starts", e.event_id));
            }
            if e.status != "confirmed" && e.status != "cancelled" {
                return Err(format!(
                    "event {} has unknown status `{}`",
                    e.event_id, e.status
                ));
            }
            e.start = fmt_datetime(s);
            e.end = fmt_datetime(t);
        }
        server.events.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        Ok(server)
    }

    fn find(&self, id: &str) -> Result<usize, String> {
        self.events
            .iter()
            .position(|e| e.event_id == id)
            .ok_or_else(|| format!("no event with event_id `{id}`. Use list_events to find ids"))
    }

    /// Confirmed events of `who` overlapping [start, end), except `ignore`.
    fn busy(
        &self,
        who: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        ignore: &[String],
    ) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.status == "confirmed" && e.has(who) && !ignore.contains(&e.event_id))
            .filter(|e| {
                let (s, t) = e.span();
                s < end && start < t
            })
            .collect()
    }

    fn conflicts(
        &self,
        attendees: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        ignore: &[String],
    ) -> Vec<String> {
        let mut out = Vec::new();
        for a in attendees {
            for e in self.busy(a, start, end, ignore) {
                out.push(format!(
                    "{a} is busy {}-{} UTC ({} \"{}\")",
                    &e.start[11..16],
                    &e.end[11..16],
                    e.event_id,
                    e.title
                ));
            }
        }
        out
    }

    fn check_times(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), String> {
        if end <= start {
            return Err("`end` must be after `start`".into());
        }
        if end - start > Duration::hours(12) {
            return Err("an event may last at most 12 hours".into());
        }
        Ok(())
    }

    fn check_attendees(attendees: &[String]) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = Vec::new();
        for a in attendees {
            if !is_email(a) {
                return Err(format!(
                    "attendee `{a}` is not an email address (expected name@domain)"
                ));
            }
            if !out.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                out.push(a.to_lowercase());
            }
        }
        Ok(out)
    }

    fn conflict_error(conflicts: Vec<String>) -> String {
        format!(
            "scheduling conflict: {}. Choose another time (find_free_slots can help) or pass allow_conflict: true to double-book deliberately",
            conflicts.join("; ")
        )
    }
}

fn day_bounds(
    p: &Params,
    date: chrono::NaiveDate,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let time = |k: &str, d: &str| {
        let s = p.opt_str(k).unwrap_or(d);
        NaiveTime::parse_from_str(s, "%H:%M")
            .map_err(|_| format!("parameter `{k}` must be a time like 09:00, got {s:?}"))
    };
    let (a, b) = (time("day_start", "09:00")?, time("day_end", "17:00")?);
    if b <= a {
        return Err("`day_end` must be after `day_start`".into());
    }
    Ok((date.and_time(a).and_utc(), date.and_time(b).and_utc()))
}

impl ToolServer for CalendarServer {
    fn name(&self) -> &'static str {
        "calendar"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        let id =
            json!({"type": "string", "description": "Event id, e.g. evt_0005", "minLength": 1});
        let dt = |d: &str| json!({"type": "string", "format": "date-time", "description": format!("{d} (UTC, e.g. 2026-03-04T10:30:00Z)")});
        let people = json!({"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1, "description": "Attendee email addresses"});
        let ignore = json!({"type": "array", "items": {"type": "string"}, "description": "Event ids to treat as free time (e.g. the event you are moving)"});
        vec![
            spec("list_events", "List calendar events, ordered by start time. Filter by date range (inclusive) and attendee.", false, json!({
                "type": "object", "additionalProperties": false,
                "properties": {
                    "start_date": {"type": "string", "format": "date", "description": "First day, e.g. 2026-03-02"},
                    "end_date": {"type": "string", "format": "date", "description": "Last day (inclusive)"},
                    "attendee": {"type": "string", "description": "Only events with this attendee email"},
                    "include_cancelled": {"type": "boolean", "description": "Default false"},
                },
            })),
            spec("get_event", "Get one event with all its details.", false, json!({
                "type": "object", "additionalProperties": false, "required": ["event_id"],
                "properties": {"event_id": id},
            })),
            spec("create_event", "Create an event. Fails with a conflict if an attendee already has a confirmed event overlapping it, unless allow_conflict is true.", true, json!({
                "type": "object", "additionalProperties": false, "required": ["title", "start", "end", "attendees"],
                "properties": {
                    "title": {"type": "string", "minLength": 1},
                    "start": dt("Start"), "end": dt("End"),
                    "attendees": people,
                    "location": {"type": "string"},
                    "description": {"type": "string"},
                    "allow_conflict": {"type": "boolean", "description": "Double-book deliberately (default false)"},
                },
            })),
            spec("update_event", "Change an event's title, time, attendees, location or description. A new time or new attendees is checked for conflicts like create_event.", true, json!({
                "type": "object", "additionalProperties": false, "required": ["event_id"],
                "properties": {
                    "event_id": id,
                    "title": {"type": "string", "minLength": 1},
                    "start": dt("New start"), "end": dt("New end"),
                    "attendees": people,
                    "location": {"type": "string"},
                    "description": {"type": "string"},
                    "allow_conflict": {"type": "boolean"},
                },
            })),
            spec("cancel_event", "Cancel an event (it stays listed with status cancelled).", true, json!({
                "type": "object", "additionalProperties": false, "required": ["event_id"],
                "properties": {"event_id": id, "reason": {"type": "string"}},
            })),
            spec("check_availability", "For each attendee, whether they are free for the whole interval, and which events block them.", false, json!({
                "type": "object", "additionalProperties": false, "required": ["attendees", "start", "end"],
                "properties": {"attendees": people, "start": dt("Start"), "end": dt("End"), "ignore_event_ids": ignore},
            })),
            spec("find_free_slots", "Find slots on one day when all attendees are free, on a 30-minute grid within working hours (default 09:00-17:00 UTC), earliest first.", false, json!({
                "type": "object", "additionalProperties": false, "required": ["attendees", "date", "duration_minutes"],
                "properties": {
                    "attendees": people,
                    "date": {"type": "string", "format": "date", "description": "Day to search, e.g. 2026-03-04"},
                    "duration_minutes": {"type": "integer", "minimum": 15, "maximum": 480},
                    "day_start": {"type": "string", "format": "time", "description": "Default 09:00"},
                    "day_end": {"type": "string", "format": "time", "description": "Default 17:00"},
                    "ignore_event_ids": ignore,
                },
            })),
        ]
    }

    fn step(
        &mut self,
        ctx: &Ctx,
        tool: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, String> {
        let p = Params(params);
        let ignore = p.strings("ignore_event_ids").unwrap_or_default();
        match tool {
            "list_events" => {
                let from = p
                    .opt_str("start_date")
                    .map(|_| p.date("start_date"))
                    .transpose()?;
                let to = p
                    .opt_str("end_date")
                    .map(|_| p.date("end_date"))
                    .transpose()?;
                if let (Some(a), Some(b)) = (from, to) {
                    if b < a {
                        return Err("`end_date` is before `start_date`".into());
                    }
                }
                let who = p.opt_str("attendee");
                let cancelled = p.bool_or("include_cancelled", false);
                let mut hits: Vec<&Event> = self
                    .events
                    .iter()
                    .filter(|e| cancelled || e.status == "confirmed")
                    .filter(|e| who.is_none_or(|w| e.has(w)))
                    .filter(|e| {
                        let (s, t) = e.span();
                        from.is_none_or(|f| t.date_naive() >= f)
                            && to.is_none_or(|l| s.date_naive() <= l)
                    })
                    .collect();
                hits.sort_by(|a, b| a.start.cmp(&b.start).then(a.event_id.cmp(&b.event_id)));
                Ok(json!({"total": hits.len(), "events": hits}))
            }
            "get_event" => serde_json::to_value(&self.events[self.find(p.str("event_id")?)?])
                .map_err(|e| e.to_string()),
            "create_event" => {
                let (start, end) = (p.datetime("start")?, p.datetime("end")?);
                Self::check_times(start, end)?;
                let attendees = Self::check_attendees(&p.strings("attendees").unwrap_or_default())?;
                let conflicts = self.conflicts(&attendees, start, end, &[]);
                if !conflicts.is_empty() && !p.bool_or("allow_conflict", false) {
                    return Err(Self::conflict_error(conflicts));
                }
                let id = next_id("evt_", 4, self.events.iter().map(|e| e.event_id.as_str()));
                let event = Event {
                    event_id: id,
                    title: p.str("title")?.to_string(),
                    start: fmt_datetime(start),
                    end: fmt_datetime(end),
                    organizer: self.owner.clone(),
                    attendees,
                    location: p.opt_str("location").unwrap_or_default().to_string(),
                    description: p.opt_str("description").unwrap_or_default().to_string(),
                    status: "confirmed".into(),
                    created_at: ctx.now_text(),
                    updated_at: None,
                    cancel_reason: None,
                };
                let out =
                    json!({"status": "created", "event": &event, "conflicts_accepted": conflicts});
                self.events.push(event);
                Ok(out)
            }
            "update_event" => {
                let i = self.find(p.str("event_id")?)?;
                let current = self.events[i].clone();
                if current.status == "cancelled" {
                    return Err(format!(
                        "event {} is cancelled; create a new event instead",
                        current.event_id
                    ));
                }
                let (old_start, old_end) = current.span();
                let start = p
                    .opt_str("start")
                    .map(|_| p.datetime("start"))
                    .transpose()?;
                let end = p.opt_str("end").map(|_| p.datetime("end")).transpose()?;
                // Moving only the start keeps the duration.
                let (start, end) = match (start, end) {
                    (Some(s), None) => (s, s + (old_end - old_start)),
                    (s, e) => (s.unwrap_or(old_start), e.unwrap_or(old_end)),
                };
                Self::check_times(start, end)?;
                let attendees = match p.strings("attendees") {
                    Some(a) => Self::check_attendees(&a)?,
                    None => current.attendees.clone(),
                };
                let changed_time = (start, end) != (old_start, old_end);
                let to_check: Vec<String> = if changed_time {
                    attendees.clone()
                } else {
                    attendees
                        .iter()
                        .filter(|a| !current.has(a))
                        .cloned()
                        .collect()
                };
                let conflicts = self.conflicts(
                    &to_check,
                    start,
                    end,
                    std::slice::from_ref(&current.event_id),
                );
                if !conflicts.is_empty() && !p.bool_or("allow_conflict", false) {
                    return Err(Self::conflict_error(conflicts));
                }
                let e = &mut self.events[i];
                e.start = fmt_datetime(start);
                e.end = fmt_datetime(end);
                e.attendees = attendees;
                if let Some(t) = p.opt_str("title") {
                    e.title = t.to_string();
                }
                if let Some(l) = p.opt_str("location") {
                    e.location = l.to_string();
                }
                if let Some(d) = p.opt_str("description") {
                    e.description = d.to_string();
                }
                e.updated_at = Some(ctx.now_text());
                Ok(json!({"status": "updated", "event": e, "conflicts_accepted": conflicts}))
            }
            "cancel_event" => {
                let i = self.find(p.str("event_id")?)?;
                let e = &mut self.events[i];
                if e.status == "cancelled" {
                    return Err(format!("event {} is already cancelled", e.event_id));
                }
                e.status = "cancelled".into();
                e.cancel_reason = p.opt_str("reason").map(str::to_string);
                e.updated_at = Some(ctx.now_text());
                Ok(json!({"status": "cancelled", "event_id": e.event_id}))
            }
            "check_availability" => {
                let (start, end) = (p.datetime("start")?, p.datetime("end")?);
                Self::check_times(start, end)?;
                let attendees = Self::check_attendees(&p.strings("attendees").unwrap_or_default())?;
                let rows: Vec<Value> = attendees
                    .iter()
                    .map(|a| {
                        let busy: Vec<Value> = self
                            .busy(a, start, end, &ignore)
                            .into_iter()
                            .map(Event::brief)
                            .collect();
                        json!({"attendee": a, "free": busy.is_empty(), "conflicts": busy})
                    })
                    .collect();
                let all_free = rows.iter().all(|r| r["free"] == Value::Bool(true));
                Ok(
                    json!({"start": fmt_datetime(start), "end": fmt_datetime(end), "all_free": all_free, "attendees": rows}),
                )
            }
            "find_free_slots" => {
                let date = p.date("date")?;
                let (day_start, day_end) = day_bounds(&p, date)?;
                let duration = Duration::minutes(p.u64_or("duration_minutes", 30) as i64);
                let attendees = Self::check_attendees(&p.strings("attendees").unwrap_or_default())?;
                let mut slots = Vec::new();
                let mut t = day_start;
                while t + duration <= day_end {
                    if attendees
                        .iter()
                        .all(|a| self.busy(a, t, t + duration, &ignore).is_empty())
                    {
                        slots.push(
                            json!({"start": fmt_datetime(t), "end": fmt_datetime(t + duration)}),
                        );
                    }
                    t += Duration::minutes(30);
                }
                Ok(
                    json!({"date": date.to_string(), "duration_minutes": duration.num_minutes(), "attendees": attendees, "slots": slots}),
                )
            }
            other => Err(format!("unknown tool `{other}` on the calendar server")),
        }
    }

    fn data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn human_readable(&self) -> String {
        let mut events: Vec<&Event> = self.events.iter().collect();
        events.sort_by(|a, b| a.start.cmp(&b.start).then(a.event_id.cmp(&b.event_id)));
        let mut out = format!("Calendar ({} events)\n", events.len());
        for e in events {
            let mark = if e.status == "cancelled" {
                " [cancelled]"
            } else {
                ""
            };
            out.push_str(&format!(
                "{} {} {}-{} {}{mark} ({})\n",
                e.event_id,
                &e.start[..10],
                &e.start[11..16],
                &e.end[11..16],
                e.title,
                e.attendees.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
