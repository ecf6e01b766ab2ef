//! The commerce server: an online retailer's back office as a support agent sees it,
//! modelled on Shopify orders, Stripe refunds and a Zendesk knowledge base. It holds
//! customers (tier, contact, store-credit balance), the product catalog with stock,
//! orders (line items, amounts in integer cents, payment, shipment with tracking
//! events), refunds, returns (RMAs), store credits, coupons, supervisor approvals and
//! order notes; the knowledge base is the scenario's seed documents (read-only).
//!
//! Business rules the agent meets as in-band errors, each saying why and what is
//! allowed: cancelling or re-addressing an order that has shipped, refunding more than
//! was paid minus earlier refunds, a refund or store credit above the store's limit
//! without a matching, unused supervisor approval, a return outside the tier's window
//! (counted in days from the delivery date) or of a final-sale item or of more units
//! than are left, a replacement when stock is short, an expired, unknown or
//! ineligible coupon, a second coupon on one order.
//!
//! Tracking events are seeded with their times; an event later than the simulated
//! clock has not happened yet and is never shown.
//!
//! Over 600 lines: orders, refunds, stock and store credit change one another through
//! the same private records, so they stay together.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{documents, next_id, parse_datetime, spec, Ctx, Params, ToolServer, ToolSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub customer_id: String,
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub phone: String,
    /// `standard`, `plus` or `vip`.
    pub tier: String,
    #[serde(default)]
    pub store_credit_cents: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub stock: i64,
    /// Clearance items that cannot be returned.
    #[serde(default)]
    pub final_sale: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    pub line_id: String,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
    #[serde(default)]
    pub final_sale: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingEvent {
    pub at: String,
    /// `label_created`, `in_transit`, `out_for_delivery`, `delivered`, `exception`.
    pub status: String,
    pub location: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    /// `standard` or `express`.
    pub service: String,
    pub shipped_at: String,
    /// The latest delivery date promised at checkout.
    pub promised_by: String,
    #[serde(default)]
    pub events: Vec<TrackingEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub placed_at: String,
    /// `placed` (awaiting payment), `paid`, `shipped`, `delivered`, `cancelled` or
    /// `returned` (every unit under a return).
    pub status: String,
    pub currency: String,
    pub items: Vec<LineItem>,
    pub shipping_cents: i64,
    #[serde(default)]
    pub discount_cents: i64,
    #[serde(default)]
    pub coupon_code: Option<String>,
    pub total_cents: i64,
    pub paid_cents: i64,
    pub shipping_address: Address,
    #[serde(default)]
    pub shipment: Option<Shipment>,
    #[serde(default)]
    pub delivered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
}

impl Order {
    fn subtotal(&self) -> i64 {
        self.items
            .iter()
            .map(|l| l.quantity.saturating_mul(l.unit_price_cents))
            .fold(0i64, i64::saturating_add)
    }

    fn shipped(&self) -> bool {
        matches!(self.status.as_str(), "shipped" | "delivered" | "returned")
    }

    fn summary(&self) -> Value {
        json!({
            "order_id": self.order_id, "placed_at": self.placed_at, "status": self.status,
            "items": self.items.iter().map(|l| format!("{} x{}", l.name, l.quantity)).collect::<Vec<_>>(),
            "total": money(self.total_cents), "total_cents": self.total_cents,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    pub refund_id: String,
    pub order_id: String,
    pub amount_cents: i64,
    pub reason: String,
    #[serde(default)]
    pub line_id: Option<String>,
    #[serde(default)]
    pub approval_id: Option<String>,
    #[serde(default)]
    pub note: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnAuthorization {
    pub rma_id: String,
    pub order_id: String,
    pub line_id: String,
    pub sku: String,
    pub quantity: i64,
    pub reason: String,
    /// `authorized` (label sent, awaiting the parcel) or `received`.
    pub status: String,
    pub created_at: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCredit {
    pub credit_id: String,
    pub customer_id: String,
    pub amount_cents: i64,
    pub reason: String,
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub approval_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coupon {
    pub code: String,
    /// `percent` (value is a whole percentage) or `fixed` (value in cents).
    pub kind: String,
    pub value: i64,
    #[serde(default)]
    pub min_subtotal_cents: i64,
    /// Tiers that may use it; empty means everyone.
    #[serde(default)]
    pub tiers: Vec<String>,
    pub expires_at: String,
}

/// A supervisor's sign-off, known to the system: the agent learns its id from the
/// supervisor, never from a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub approval_id: String,
    /// The order the approval is for (a store credit's approval names its customer).
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub max_amount_cents: i64,
    pub approved_by: String,
    /// The refund or credit that used it: approvals are single use.
    #[serde(default)]
    pub used_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderNote {
    pub order_id: String,
    pub author: String,
    pub text: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommerceServer {
    pub store: String,
    /// Who the agent acts as (author of notes).
    pub actor: String,
    /// Refunds above this need a supervisor approval.
    pub refund_approval_threshold_cents: i64,
    /// Store credit above this (per grant) needs a supervisor approval.
    pub store_credit_limit_cents: i64,
    /// Return window in days after delivery, by customer tier.
    pub return_window_days: BTreeMap<String, i64>,
    #[serde(default)]
    pub customers: Vec<Customer>,
    #[serde(default)]
    pub products: Vec<Product>,
    #[serde(default)]
    pub orders: Vec<Order>,
    #[serde(default)]
    pub refunds: Vec<Refund>,
    #[serde(default)]
    pub returns: Vec<ReturnAuthorization>,
    #[serde(default)]
    pub store_credits: Vec<StoreCredit>,
    #[serde(default)]
    pub coupons: Vec<Coupon>,
    /// Read from the seed but never shown: the snapshot is public to an outside agent,
    /// and an approval id must come from the supervisor, not from reading the state.
    /// Refunds and credits record the approval they used.
    #[serde(default, skip_serializing)]
    pub approvals: Vec<Approval>,
    #[serde(default)]
    pub notes: Vec<OrderNote>,
    /// The scenario's documents (the knowledge base); static, so not part of the state.
    #[serde(skip)]
    documents: BTreeMap<String, String>,
}

pub const TIERS: &[&str] = &["standard", "plus", "vip"];
pub const ORDER_STATUSES: &[&str] = &[
    "placed",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "returned",
];
/// Reasons an agent may give. The server records two more of its own: `cancelled`
/// (the refund of `cancel_order`) and `price_adjustment` (that of `apply_coupon`).
pub const REFUND_REASONS: &[&str] = &[
    "damaged",
    "defective",
    "not_received",
    "wrong_item",
    "late_delivery",
    "returned",
    "goodwill",
    "other",
];
pub const RETURN_REASONS: &[&str] = &[
    "defective",
    "damaged",
    "wrong_item",
    "not_as_described",
    "changed_mind",
    "wrong_size",
];

/// `$1,234.56` (negative amounts keep their sign).
pub fn money(cents: i64) -> String {
    super::money::amount(cents, "$")
}

/// The last day a return may be opened: the delivery date plus the window (the day of
/// delivery is day 0).
pub fn return_deadline(delivered: NaiveDate, window_days: i64) -> NaiveDate {
    delivered
        .checked_add_signed(Duration::try_days(window_days).unwrap_or(Duration::zero()))
        .unwrap_or(delivered)
}

fn date_of(text: &str) -> Option<NaiveDate> {
    parse_datetime(text)
        .map(|t| t.date_naive())
        .or_else(|| super::parse_date(text))
}

impl CommerceServer {
    pub fn from_seed(seed: &Value, documents: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut s: CommerceServer = if seed.as_object().is_some_and(Map::is_empty) {
            CommerceServer {
                store: "Store".into(),
                actor: "support".into(),
                refund_approval_threshold_cents: 20_000,
                store_credit_limit_cents: 2_500,
                return_window_days: TIERS.iter().map(|t| (t.to_string(), 30)).collect(),
                customers: Vec::new(),
                products: Vec::new(),
                orders: Vec::new(),
                refunds: Vec::new(),
                returns: Vec::new(),
                store_credits: Vec::new(),
                coupons: Vec::new(),
                approvals: Vec::new(),
                notes: Vec::new(),
                documents: BTreeMap::new(),
            }
        } else {
            serde_json::from_value(seed.clone()).map_err(|e| e.to_string())?
        };
        s.documents = documents.clone();
        for c in &s.customers {
            if !TIERS.contains(&c.tier.as_str()) || !s.return_window_days.contains_key(&c.tier) {
                return Err(format!(
                    "customer {} has tier `{}` without a return window",
                    c.customer_id, c.tier
                ));
            }
        }
        for o in &s.orders {
            if !s.customers.iter().any(|c| c.customer_id == o.customer_id) {
                return Err(format!(
                    "order {} has unknown customer {}",
                    o.order_id, o.customer_id
                ));
            }
            if !ORDER_STATUSES.contains(&o.status.as_str()) {
                return Err(format!(
                    "order {} has unknown status `{}`",
                    o.order_id, o.status
                ));
            }
        }
        for r in &s.refunds {
            if !s.orders.iter().any(|o| o.order_id == r.order_id) {
                return Err(format!(
                    "refund {} has unknown order {}",
                    r.refund_id, r.order_id
                ));
            }
        }
        Ok(s)
    }

    fn customer(&self, id: &str) -> Result<&Customer, String> {
        let id = id.trim();
        self.customers
            .iter()
            .find(|c| c.customer_id.eq_ignore_ascii_case(id) || c.email.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                format!(
                    "no customer `{id}`. Use search_customers to find customer ids (like CUS-1001)"
                )
            })
    }

    fn order_index(&self, id: &str) -> Result<usize, String> {
        let id = id.trim().trim_start_matches('#');
        self.orders
            .iter()
            .position(|o| {
                o.order_id.eq_ignore_ascii_case(id)
                    || o.order_id
                        .strip_prefix("ORD-")
                        .is_some_and(|n| n.eq_ignore_ascii_case(id))
            })
            .ok_or_else(|| {
                format!("no order `{id}`. Use list_orders with a customer_id to find order ids (like ORD-50012)")
            })
    }

    fn refunded(&self, order_id: &str) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.order_id == order_id)
            .map(|r| r.amount_cents)
            .fold(0i64, i64::saturating_add)
    }

    fn refundable(&self, o: &Order) -> i64 {
        o.paid_cents
            .saturating_sub(self.refunded(&o.order_id))
            .max(0)
    }

    fn returned_units(&self, order_id: &str, line_id: &str) -> i64 {
        self.returns
            .iter()
            .filter(|r| r.order_id == order_id && r.line_id == line_id)
            .map(|r| r.quantity)
            .fold(0i64, i64::saturating_add)
    }

    fn window_of(&self, customer_id: &str) -> (String, i64) {
        let tier = self
            .customers
            .iter()
            .find(|c| c.customer_id == customer_id)
            .map(|c| c.tier.clone())
            .unwrap_or_else(|| "standard".into());
        let days = self.return_window_days.get(&tier).copied().unwrap_or(30);
        (tier, days)
    }

    /// The approval for `amount` on this order or customer, or why there is none.
    fn check_approval(
        &self,
        approval_id: Option<&str>,
        order_id: Option<&str>,
        customer_id: &str,
        amount: i64,
        limit: i64,
        what: &str,
    ) -> Result<Option<usize>, String> {
        if amount <= limit {
            return Ok(None);
        }
        let Some(id) = approval_id.map(str::trim).filter(|s| !s.is_empty()) else {
            return Err(format!(
                "{what} of {} is above the {} limit agents may grant alone; ask a support supervisor for approval (see the escalation policy) and pass their approval id as `approval_id`",
                money(amount),
                money(limit)
            ));
        };
        let Some(i) = self
            .approvals
            .iter()
            .position(|a| a.approval_id.eq_ignore_ascii_case(id))
        else {
            return Err(format!(
                "approval `{id}` does not exist; check the id the supervisor gave you (like APR-2041)"
            ));
        };
        let a = &self.approvals[i];
        let fits = match (&a.order_id, order_id) {
            (Some(o), Some(want)) => o == want,
            (Some(_), None) => false,
            (None, _) => a.customer_id.as_deref() == Some(customer_id),
        };
        if !fits {
            return Err(format!(
                "approval {} was given for {}, not for this {what}",
                a.approval_id,
                a.order_id
                    .clone()
                    .or_else(|| a.customer_id.clone())
                    .unwrap_or_default()
            ));
        }
        if let Some(used) = &a.used_by {
            return Err(format!(
                "approval {} was already used for {used}; approvals are single use",
                a.approval_id
            ));
        }
        if amount > a.max_amount_cents {
            return Err(format!(
                "approval {} covers at most {}, not {}",
                a.approval_id,
                money(a.max_amount_cents),
                money(amount)
            ));
        }
        Ok(Some(i))
    }

    fn next_refund_id(&self) -> String {
        next_id("RF-", 4, self.refunds.iter().map(|r| r.refund_id.as_str()))
    }

    fn order_view(&self, o: &Order, now: DateTime<Utc>) -> Value {
        let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
        if let Some(events) = v.pointer_mut("/shipment/events") {
            *events = json!(visible_events(o, now));
        }
        let refunds: Vec<&Refund> = self
            .refunds
            .iter()
            .filter(|r| r.order_id == o.order_id)
            .collect();
        let returns: Vec<&ReturnAuthorization> = self
            .returns
            .iter()
            .filter(|r| r.order_id == o.order_id)
            .collect();
        let notes: Vec<&OrderNote> = self
            .notes
            .iter()
            .filter(|n| n.order_id == o.order_id)
            .collect();
        v["subtotal_cents"] = o.subtotal().into();
        v["total"] = money(o.total_cents).into();
        v["refunded_cents"] = self.refunded(&o.order_id).into();
        v["refundable_cents"] = self.refundable(o).into();
        v["refunds"] = json!(refunds);
        v["returns"] = json!(returns);
        v["notes"] = json!(notes);
        if let Some(c) = self
            .customers
            .iter()
            .find(|c| c.customer_id == o.customer_id)
        {
            v["customer"] = json!({"customer_id": c.customer_id, "name": c.name, "email": c.email, "tier": c.tier});
        }
        v
    }
}

/// A shipment's events that have happened by `now` (the simulated clock); an event
/// whose time cannot be read is shown rather than hidden.
fn visible_events(o: &Order, now: DateTime<Utc>) -> Vec<TrackingEvent> {
    o.shipment
        .as_ref()
        .map(|s| {
            s.events
                .iter()
                .filter(|e| {
                    parse_datetime(&e.at)
                        .or_else(|| {
                            super::parse_date(&e.at)
                                .map(|d| d.and_time(Default::default()).and_utc())
                        })
                        .is_none_or(|t| t <= now)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn amount_param(p: &Params, key: &str) -> Result<i64, String> {
    p.0.get(key)
        .and_then(Value::as_i64)
        .filter(|a| *a > 0)
        .ok_or_else(|| {
            format!("`{key}` must be a positive whole number of cents, e.g. 4599 for $45.99")
        })
}

fn address_param(p: &Params, fallback_name: &str) -> Result<Address, String> {
    let field = |k: &str| p.opt_str(k).map(str::trim).unwrap_or_default().to_string();
    let address = Address {
        name: Some(field("name"))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| fallback_name.to_string()),
        line1: field("line1"),
        line2: field("line2"),
        city: field("city"),
        region: field("region"),
        postal_code: field("postal_code"),
        country: field("country").to_uppercase(),
    };
    for (k, v) in [
        ("line1", &address.line1),
        ("city", &address.city),
        ("postal_code", &address.postal_code),
    ] {
        if v.is_empty() {
            return Err(format!("`{k}` must not be empty"));
        }
    }
    if address.country.len() != 2 || !address.country.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "`country` must be a two-letter code like US or CA, got {:?}",
            address.country
        ));
    }
    Ok(address)
}

impl ToolServer for CommerceServer {
    fn name(&self) -> &'static str {
        "commerce"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        let obj = |required: Vec<&str>, props: Value| json!({"type": "object", "additionalProperties": false, "required": required, "properties": props});
        let order =
            json!({"type": "string", "minLength": 1, "description": "Order id like ORD-50012"});
        let customer = json!({"type": "string", "minLength": 1, "description": "Customer id like CUS-1001 (the customer's email also works)"});
        let cents = |d: &str| json!({"type": "integer", "minimum": 1, "maximum": 100_000_000, "description": d});
        let text = |d: &str| json!({"type": "string", "description": d});
        vec![
            spec("search_customers", "Search customers by name, email, phone or id (`query`, substring, case-insensitive), optionally by tier. Several customers may share a name: compare emails.", false, obj(vec![], json!({
                "query": text("Part of a name, email, phone or id"), "tier": {"type": "string", "enum": TIERS},
            }))),
            spec("get_customer", "A customer's record: contact, tier, store-credit balance and their orders (newest first).", false, obj(vec!["customer_id"], json!({"customer_id": customer}))),
            spec("list_orders", "List orders, newest first, filtered by customer and status.", false, obj(vec![], json!({
                "customer_id": customer, "status": {"type": "string", "enum": ORDER_STATUSES},
            }))),
            spec("get_order", "An order in full: line items (line_id, sku, quantity, unit price), amounts in cents, payment, coupon, shipping address, shipment, delivery date, refunds, returns and notes, and how much can still be refunded.", false, obj(vec!["order_id"], json!({"order_id": order}))),
            spec("track_shipment", "The carrier's tracking events of an order's shipment up to now, with the service level and the promised delivery date.", false, obj(vec![], json!({
                "order_id": order, "tracking_number": text("The carrier's tracking number (instead of order_id)"),
            }))),
            spec("search_products", "Search the product catalog by name or SKU: price, stock on hand, final-sale flag.", false, obj(vec![], json!({
                "query": text("Part of a product name or SKU; empty lists everything"), "in_stock": {"type": "boolean", "description": "Only products with stock"},
            }))),
            spec("cancel_order", "Cancel an order that has not shipped (status placed or paid). Whatever was paid and not yet refunded is refunded in full to the original payment method, and the items go back into stock.", true, obj(vec!["order_id", "reason"], json!({
                "order_id": order, "reason": {"type": "string", "minLength": 3, "description": "Why, e.g. customer request"},
            }))),
            spec("update_shipping_address", "Change the shipping address of an order that has not shipped yet.", true, obj(vec!["order_id", "line1", "city", "postal_code", "country"], json!({
                "order_id": order, "name": text("Recipient (defaults to the current one)"), "line1": {"type": "string", "minLength": 1},
                "line2": text("Apartment, unit (optional)"), "city": {"type": "string", "minLength": 1}, "region": text("State or province code, e.g. OR"),
                "postal_code": {"type": "string", "minLength": 1}, "country": {"type": "string", "minLength": 2, "description": "Two-letter code, e.g. US"},
            }))),
            spec("issue_refund", "Refund money to the original payment method. At most what was paid minus earlier refunds; a refund above the store's approval threshold needs a supervisor's `approval_id`. Give `line_id` when the refund is for one line item.", true, obj(vec!["order_id", "amount_cents", "reason"], json!({
                "order_id": order, "amount_cents": cents("Amount in cents, e.g. 4599 for $45.99"),
                "reason": {"type": "string", "enum": REFUND_REASONS}, "line_id": text("The line item refunded, e.g. L2"),
                "approval_id": text("A supervisor's approval id, e.g. APR-2041"), "note": text("Internal note"),
            }))),
            spec("create_return", "Open a return (RMA) for units of one line item of a delivered order. Only inside the return window (days after delivery, by customer tier; see the returns policy) and never for final-sale items. A prepaid label is emailed to the customer automatically; refunds are issued separately with issue_refund.", true, obj(vec!["order_id", "line_id", "quantity", "reason"], json!({
                "order_id": order, "line_id": {"type": "string", "minLength": 1, "description": "e.g. L1 (see get_order)"},
                "quantity": {"type": "integer", "minimum": 1, "maximum": 1000}, "reason": {"type": "string", "enum": RETURN_REASONS},
                "note": text("Internal note"),
            }))),
            spec("create_replacement_order", "Ship free replacement units of one line item of an order (for damaged, defective, wrong or lost items). Needs the product in stock.", true, obj(vec!["order_id", "line_id", "quantity"], json!({
                "order_id": order, "line_id": {"type": "string", "minLength": 1}, "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
            }))),
            spec("issue_store_credit", "Add store credit to a customer's account (usable on future orders). A grant above the store-credit limit needs a supervisor's `approval_id`.", true, obj(vec!["customer_id", "amount_cents", "reason"], json!({
                "customer_id": customer, "amount_cents": cents("Amount in cents, e.g. 1500 for $15.00"),
                "reason": {"type": "string", "minLength": 3}, "order_id": order, "approval_id": text("A supervisor's approval id"),
            }))),
            spec("apply_coupon", "Apply a coupon code to an order that has not shipped. One coupon per order. If the order is already paid, the discount is refunded to the payment method at once.", true, obj(vec!["order_id", "code"], json!({
                "order_id": order, "code": {"type": "string", "minLength": 1, "description": "Coupon code, e.g. SPRING10"},
            }))),
            spec("add_order_note", "Add an internal note to an order (visible to colleagues, not to the customer).", true, obj(vec!["order_id", "note"], json!({
                "order_id": order, "note": {"type": "string", "minLength": 1},
            }))),
            spec("search_kb", "Search the support knowledge base (policies) by keywords; returns matching articles with a snippet.", false, obj(vec!["query"], json!({
                "query": {"type": "string", "minLength": 1, "description": "Keywords, e.g. return window"},
            }))),
            spec("read_kb_article", "Read one knowledge-base article in full.", false, obj(vec!["article_id"], json!({
                "article_id": {"type": "string", "minLength": 1, "description": "The article's file name from search_kb, e.g. returns_policy.md"},
            }))),
        ]
    }

    fn step(
        &mut self,
        ctx: &Ctx,
        tool: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, String> {
        let p = Params(params);
        let today = ctx.now.date_naive();
        match tool {
            "search_customers" => {
                let q = p.opt_str("query").map(|q| q.trim().to_lowercase());
                let tier = p.opt_str("tier");
                let hits: Vec<Value> = self
                    .customers
                    .iter()
                    .filter(|c| {
                        q.as_ref().is_none_or(|q| {
                            [&c.name, &c.email, &c.phone, &c.customer_id]
                                .iter()
                                .any(|f| f.to_lowercase().contains(q.as_str()))
                        }) && tier.is_none_or(|t| c.tier == t)
                    })
                    .map(|c| json!({"customer_id": c.customer_id, "name": c.name, "email": c.email, "tier": c.tier}))
                    .collect();
                Ok(json!({"total": hits.len(), "customers": hits}))
            }
            "get_customer" => {
                let c = self.customer(p.str("customer_id")?)?;
                let mut orders: Vec<&Order> = self
                    .orders
                    .iter()
                    .filter(|o| o.customer_id == c.customer_id)
                    .collect();
                orders.sort_by(|a, b| b.placed_at.cmp(&a.placed_at));
                let mut v = serde_json::to_value(c).map_err(|e| e.to_string())?;
                v["store_credit"] = money(c.store_credit_cents).into();
                v["return_window_days"] = self.window_of(&c.customer_id).1.into();
                v["orders"] = orders.iter().map(|o| o.summary()).collect();
                Ok(v)
            }
            "list_orders" => {
                let cust = p
                    .opt_str("customer_id")
                    .map(|c| self.customer(c).map(|c| c.customer_id.clone()))
                    .transpose()?;
                let status = p.opt_str("status");
                let mut hits: Vec<&Order> = self
                    .orders
                    .iter()
                    .filter(|o| {
                        cust.as_ref().is_none_or(|c| &o.customer_id == c)
                            && status.is_none_or(|s| o.status == s)
                    })
                    .collect();
                hits.sort_by(|a, b| b.placed_at.cmp(&a.placed_at));
                let rows: Vec<Value> = hits
                    .iter()
                    .map(|o| {
                        let mut v = o.summary();
                        v["customer_id"] = o.customer_id.clone().into();
                        v
                    })
                    .collect();
                Ok(json!({"total": rows.len(), "orders": rows}))
            }
            "get_order" => {
                let i = self.order_index(p.str("order_id")?)?;
                Ok(self.order_view(&self.orders[i], ctx.now))
            }
            "track_shipment" => {
                let o = match (p.opt_str("order_id"), p.opt_str("tracking_number")) {
                    (Some(id), _) => &self.orders[self.order_index(id)?],
                    (None, Some(t)) => self
                        .orders
                        .iter()
                        .find(|o| {
                            o.shipment
                                .as_ref()
                                .is_some_and(|s| s.tracking_number.eq_ignore_ascii_case(t.trim()))
                        })
                        .ok_or_else(|| format!("no shipment with tracking number `{t}`"))?,
                    (None, None) => return Err("give `order_id` or `tracking_number`".into()),
                };
                let Some(s) = &o.shipment else {
                    return Err(format!(
                        "order {} has not shipped yet (status {}); nothing to track",
                        o.order_id, o.status
                    ));
                };
                let events = visible_events(o, ctx.now);
                let latest = events.last().cloned();
                let days_since = latest
                    .as_ref()
                    .and_then(|e| date_of(&e.at))
                    .map(|d| (today - d).num_days());
                Ok(json!({
                    "order_id": o.order_id, "carrier": s.carrier, "tracking_number": s.tracking_number,
                    "service": s.service, "shipped_at": s.shipped_at, "promised_by": s.promised_by,
                    "delivered_at": o.delivered_at, "latest_status": latest.as_ref().map(|e| e.status.clone()),
                    "days_since_last_event": days_since, "events": events,
                }))
            }
            "search_products" => {
                let q = p
                    .opt_str("query")
                    .map(|q| q.trim().to_lowercase())
                    .unwrap_or_default();
                let in_stock = p.bool_or("in_stock", false);
                let hits: Vec<Value> = self
                    .products
                    .iter()
                    .filter(|x| {
                        (x.name.to_lowercase().contains(&q) || x.sku.to_lowercase().contains(&q))
                            && (!in_stock || x.stock > 0)
                    })
                    .map(|x| {
                        let mut v = serde_json::to_value(x).unwrap_or(Value::Null);
                        v["price"] = money(x.price_cents).into();
                        v
                    })
                    .collect();
                Ok(json!({"total": hits.len(), "products": hits}))
            }
            "cancel_order" => {
                let i = self.order_index(p.str("order_id")?)?;
                let o = self.orders[i].clone();
                if o.status == "cancelled" {
                    return Err(format!("order {} is already cancelled", o.order_id));
                }
                if o.shipped() {
                    return Err(format!(
                        "order {} has already shipped (status {}), so it can no longer be cancelled. Once it is delivered the customer can return it inside the return window (create_return); see the returns policy",
                        o.order_id, o.status
                    ));
                }
                let amount = self.refundable(&o);
                let refund = (amount > 0).then(|| Refund {
                    refund_id: self.next_refund_id(),
                    order_id: o.order_id.clone(),
                    amount_cents: amount,
                    reason: "cancelled".into(),
                    line_id: None,
                    approval_id: None,
                    note: format!("Order cancelled: {}", p.str("reason").unwrap_or_default()),
                    created_at: ctx.now_text(),
                });
                for l in &o.items {
                    if let Some(prod) = self.products.iter_mut().find(|x| x.sku == l.sku) {
                        prod.stock = prod.stock.saturating_add(l.quantity);
                    }
                }
                let order = &mut self.orders[i];
                order.status = "cancelled".into();
                order.cancelled_at = Some(ctx.now_text());
                if let Some(r) = &refund {
                    self.refunds.push(r.clone());
                }
                Ok(json!({
                    "status": "cancelled", "order_id": o.order_id,
                    "refunded_cents": amount, "refunded": money(amount), "refund": refund,
                }))
            }
            "update_shipping_address" => {
                let i = self.order_index(p.str("order_id")?)?;
                let o = &self.orders[i];
                if o.status == "cancelled" || o.shipped() {
                    return Err(format!(
                        "order {} is {}; the address can only be changed before it ships. If it is in transit, the customer can ask {} to redirect it with the tracking number",
                        o.order_id,
                        o.status,
                        o.shipment.as_ref().map_or("the carrier", |s| s.carrier.as_str())
                    ));
                }
                let address = address_param(&p, &o.shipping_address.name)?;
                let before = o.shipping_address.clone();
                self.orders[i].shipping_address = address.clone();
                Ok(
                    json!({"status": "updated", "order_id": self.orders[i].order_id, "previous_address": before, "shipping_address": address}),
                )
            }
            "issue_refund" => {
                let i = self.order_index(p.str("order_id")?)?;
                let o = self.orders[i].clone();
                let amount = amount_param(&p, "amount_cents")?;
                let reason = p.str("reason")?;
                let line_id = match p
                    .opt_str("line_id")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    Some(l) => Some(
                        o.items
                            .iter()
                            .find(|x| x.line_id.eq_ignore_ascii_case(l))
                            .map(|x| x.line_id.clone())
                            .ok_or_else(|| {
                                format!(
                                    "order {} has no line `{l}` (lines: {})",
                                    o.order_id,
                                    o.items
                                        .iter()
                                        .map(|x| x.line_id.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            })?,
                    ),
                    None => None,
                };
                if o.paid_cents <= 0 {
                    return Err(format!(
                        "order {} has not been paid, so there is nothing to refund; cancel it instead",
                        o.order_id
                    ));
                }
                let refundable = self.refundable(&o);
                if amount > refundable {
                    return Err(format!(
                        "at most {} ({refundable} cents) can still be refunded on order {}: {} paid, {} already refunded",
                        money(refundable),
                        o.order_id,
                        money(o.paid_cents),
                        money(self.refunded(&o.order_id))
                    ));
                }
                let approval = self.check_approval(
                    p.opt_str("approval_id"),
                    Some(&o.order_id),
                    &o.customer_id,
                    amount,
                    self.refund_approval_threshold_cents,
                    "a refund",
                )?;
                let refund = Refund {
                    refund_id: self.next_refund_id(),
                    order_id: o.order_id.clone(),
                    amount_cents: amount,
                    reason: reason.to_string(),
                    line_id,
                    approval_id: approval.map(|a| self.approvals[a].approval_id.clone()),
                    note: p.opt_str("note").unwrap_or_default().to_string(),
                    created_at: ctx.now_text(),
                };
                if let Some(a) = approval {
                    self.approvals[a].used_by = Some(refund.refund_id.clone());
                }
                self.refunds.push(refund.clone());
                let left = self.refundable(&o);
                Ok(json!({
                    "status": "refunded", "refund": refund, "amount": money(amount),
                    "refundable_cents_left": left,
                }))
            }
            "create_return" => {
                let i = self.order_index(p.str("order_id")?)?;
                let o = self.orders[i].clone();
                let line_id = p.str("line_id")?.trim();
                let quantity =
                    p.0.get("quantity")
                        .and_then(Value::as_i64)
                        .filter(|q| *q > 0)
                        .ok_or("`quantity` must be a positive whole number")?;
                let reason = p.str("reason")?;
                if !matches!(o.status.as_str(), "delivered" | "returned") {
                    return Err(format!(
                        "order {} is {}; returns are opened only for delivered orders{}",
                        o.order_id,
                        o.status,
                        if o.shipped() {
                            " (wait for delivery, or see the shipping policy for lost parcels)"
                        } else {
                            " (an order that has not shipped can be cancelled instead)"
                        }
                    ));
                }
                let Some(line) = o
                    .items
                    .iter()
                    .find(|x| x.line_id.eq_ignore_ascii_case(line_id))
                else {
                    return Err(format!(
                        "order {} has no line `{line_id}` (lines: {})",
                        o.order_id,
                        o.items
                            .iter()
                            .map(|x| format!("{} {}", x.line_id, x.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                };
                if line.final_sale {
                    return Err(format!(
                        "{} ({}) was a final-sale item and cannot be returned; see the returns policy for what to offer instead",
                        line.name, line.line_id
                    ));
                }
                let delivered = o.delivered_at.as_deref().and_then(date_of).ok_or_else(|| {
                    format!("order {} has no delivery date on record", o.order_id)
                })?;
                let (tier, days) = self.window_of(&o.customer_id);
                let deadline = return_deadline(delivered, days);
                if today > deadline {
                    return Err(format!(
                        "the return window for order {} closed on {deadline}: {days} days after delivery on {delivered} for {tier} customers, and today is {today}. No return can be opened; see the returns policy for what to offer instead",
                        o.order_id
                    ));
                }
                let left = line
                    .quantity
                    .saturating_sub(self.returned_units(&o.order_id, &line.line_id));
                if quantity > left {
                    return Err(format!(
                        "line {} ({}) has {left} unit(s) left to return (bought {}, already under return {})",
                        line.line_id,
                        line.name,
                        line.quantity,
                        line.quantity.saturating_sub(left)
                    ));
                }
                let rma = ReturnAuthorization {
                    rma_id: next_id("RMA-", 4, self.returns.iter().map(|r| r.rma_id.as_str())),
                    order_id: o.order_id.clone(),
                    line_id: line.line_id.clone(),
                    sku: line.sku.clone(),
                    quantity,
                    reason: reason.to_string(),
                    status: "authorized".into(),
                    created_at: ctx.now_text(),
                    note: p.opt_str("note").unwrap_or_default().to_string(),
                };
                self.returns.push(rma.clone());
                let all_returned = o
                    .items
                    .iter()
                    .all(|l| self.returned_units(&o.order_id, &l.line_id) >= l.quantity);
                if all_returned {
                    self.orders[i].status = "returned".into();
                }
                Ok(json!({
                    "status": "authorized", "return": rma, "return_deadline": deadline.to_string(),
                    "item_value_cents": line.unit_price_cents.saturating_mul(quantity),
                    "label": "A prepaid return label was emailed to the customer.",
                }))
            }
            "create_replacement_order" => {
                let i = self.order_index(p.str("order_id")?)?;
                let o = self.orders[i].clone();
                let line_id = p.str("line_id")?.trim();
                let quantity =
                    p.0.get("quantity")
                        .and_then(Value::as_i64)
                        .filter(|q| *q > 0)
                        .ok_or("`quantity` must be a positive whole number")?;
                let Some(line) = o
                    .items
                    .iter()
                    .find(|x| x.line_id.eq_ignore_ascii_case(line_id))
                else {
                    return Err(format!("order {} has no line `{line_id}`", o.order_id));
                };
                if !o.shipped() {
                    return Err(format!(
                        "order {} has not shipped yet (status {}); there is nothing to replace",
                        o.order_id, o.status
                    ));
                }
                if quantity > line.quantity {
                    return Err(format!(
                        "the order had {} unit(s) of {}; cannot replace {quantity}",
                        line.quantity, line.name
                    ));
                }
                let Some(pi) = self.products.iter().position(|x| x.sku == line.sku) else {
                    return Err(format!("{} is no longer in the catalog", line.sku));
                };
                if self.products[pi].stock < quantity {
                    return Err(format!(
                        "only {} unit(s) of {} ({}) in stock; a replacement cannot ship. Offer a refund instead (see the refund policy)",
                        self.products[pi].stock, line.name, line.sku
                    ));
                }
                self.products[pi].stock -= quantity;
                let id = next_id("ORD-", 5, self.orders.iter().map(|o| o.order_id.as_str()));
                let new = Order {
                    order_id: id.clone(),
                    customer_id: o.customer_id.clone(),
                    placed_at: ctx.now_text(),
                    status: "paid".into(),
                    currency: o.currency.clone(),
                    items: vec![LineItem {
                        line_id: "L1".into(),
                        quantity,
                        ..line.clone()
                    }],
                    shipping_cents: 0,
                    discount_cents: line.unit_price_cents.saturating_mul(quantity),
                    coupon_code: None,
                    total_cents: 0,
                    paid_cents: 0,
                    shipping_address: o.shipping_address.clone(),
                    shipment: None,
                    delivered_at: None,
                    replacement_for: Some(o.order_id.clone()),
                    cancelled_at: None,
                };
                self.orders.push(new.clone());
                Ok(
                    json!({"status": "created", "order": new, "stock_left": self.products[pi].stock}),
                )
            }
            "issue_store_credit" => {
                let c = self.customer(p.str("customer_id")?)?.clone();
                let amount = amount_param(&p, "amount_cents")?;
                let order_id = p
                    .opt_str("order_id")
                    .map(|id| {
                        self.order_index(id)
                            .map(|i| self.orders[i].order_id.clone())
                    })
                    .transpose()?;
                let approval = self.check_approval(
                    p.opt_str("approval_id"),
                    None,
                    &c.customer_id,
                    amount,
                    self.store_credit_limit_cents,
                    "store credit",
                )?;
                let credit = StoreCredit {
                    credit_id: next_id(
                        "SC-",
                        4,
                        self.store_credits.iter().map(|s| s.credit_id.as_str()),
                    ),
                    customer_id: c.customer_id.clone(),
                    amount_cents: amount,
                    reason: p.str("reason")?.to_string(),
                    order_id,
                    approval_id: approval.map(|a| self.approvals[a].approval_id.clone()),
                    created_at: ctx.now_text(),
                };
                if let Some(a) = approval {
                    self.approvals[a].used_by = Some(credit.credit_id.clone());
                }
                let balance = {
                    let Some(cust) = self
                        .customers
                        .iter_mut()
                        .find(|x| x.customer_id == c.customer_id)
                    else {
                        return Err("customer vanished".into());
                    };
                    cust.store_credit_cents = cust.store_credit_cents.saturating_add(amount);
                    cust.store_credit_cents
                };
                self.store_credits.push(credit.clone());
                Ok(
                    json!({"status": "credited", "credit": credit, "balance_cents": balance, "balance": money(balance)}),
                )
            }
            "apply_coupon" => {
                let i = self.order_index(p.str("order_id")?)?;
                let o = self.orders[i].clone();
                let code = p.str("code")?.trim();
                let Some(coupon) = self
                    .coupons
                    .iter()
                    .find(|c| c.code.eq_ignore_ascii_case(code))
                    .cloned()
                else {
                    return Err(format!(
                        "no coupon `{code}`; check the code with the customer"
                    ));
                };
                if let Some(existing) = &o.coupon_code {
                    return Err(format!(
                        "order {} already has coupon {existing}; only one coupon per order",
                        o.order_id
                    ));
                }
                if o.status == "cancelled" || o.shipped() {
                    return Err(format!(
                        "order {} is {}; coupons can only be applied before an order ships",
                        o.order_id, o.status
                    ));
                }
                if parse_datetime(&coupon.expires_at).is_some_and(|t| t < ctx.now) {
                    return Err(format!(
                        "coupon {} expired on {}",
                        coupon.code, coupon.expires_at
                    ));
                }
                let tier = self.window_of(&o.customer_id).0;
                if !coupon.tiers.is_empty() && !coupon.tiers.contains(&tier) {
                    return Err(format!(
                        "coupon {} is only for {} customers; this customer is {tier}",
                        coupon.code,
                        coupon.tiers.join("/")
                    ));
                }
                let subtotal = o.subtotal();
                if subtotal < coupon.min_subtotal_cents {
                    return Err(format!(
                        "coupon {} needs a subtotal of at least {}; order {} has {}",
                        coupon.code,
                        money(coupon.min_subtotal_cents),
                        o.order_id,
                        money(subtotal)
                    ));
                }
                let discount = match coupon.kind.as_str() {
                    // Percent discounts round down to the cent, in the customer's favour
                    // only by less than a cent.
                    "percent" => subtotal.saturating_mul(coupon.value.clamp(0, 100)) / 100,
                    _ => coupon.value.clamp(0, subtotal),
                };
                let refund = (o.paid_cents > 0 && discount > 0).then(|| Refund {
                    refund_id: self.next_refund_id(),
                    order_id: o.order_id.clone(),
                    amount_cents: discount.min(self.refundable(&o)),
                    reason: "price_adjustment".into(),
                    line_id: None,
                    approval_id: None,
                    note: format!("Price adjustment: coupon {}", coupon.code),
                    created_at: ctx.now_text(),
                });
                let order = &mut self.orders[i];
                order.coupon_code = Some(coupon.code.clone());
                order.discount_cents = order.discount_cents.saturating_add(discount);
                order.total_cents = order.total_cents.saturating_sub(discount).max(0);
                if let Some(r) = &refund {
                    self.refunds.push(r.clone());
                }
                Ok(json!({
                    "status": "applied", "order_id": o.order_id, "code": coupon.code,
                    "discount_cents": discount, "discount": money(discount),
                    "new_total_cents": self.orders[i].total_cents, "refund": refund,
                }))
            }
            "add_order_note" => {
                let i = self.order_index(p.str("order_id")?)?;
                let note = OrderNote {
                    order_id: self.orders[i].order_id.clone(),
                    author: self.actor.clone(),
                    text: p.str("note")?.to_string(),
                    created_at: ctx.now_text(),
                };
                self.notes.push(note.clone());
                Ok(json!({"status": "noted", "note": note}))
            }
            "search_kb" => Ok(documents::search(&self.documents, p.opt_str("query"))),
            "read_kb_article" => documents::read_article(&self.documents, p.str("article_id")?),
            other => Err(format!("unknown tool `{other}` on the commerce server")),
        }
    }

    fn data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn human_readable(&self) -> String {
        let mut out = format!(
            "{} commerce: {} customers, {} products, {} orders, {} refunds, {} returns, {} store credits\n",
            self.store,
            self.customers.len(),
            self.products.len(),
            self.orders.len(),
            self.refunds.len(),
            self.returns.len(),
            self.store_credits.len()
        );
        for o in &self.orders {
            out.push_str(&format!(
                "order {} {} {} {} paid {} refunded {}\n",
                o.order_id,
                o.customer_id,
                o.status,
                money(o.total_cents),
                money(o.paid_cents),
                money(self.refunded(&o.order_id))
            ));
        }
        for r in &self.refunds {
            out.push_str(&format!(
                "refund {} {} {} {}\n",
                r.refund_id,
                r.order_id,
                money(r.amount_cents),
                r.reason
            ));
        }
        for r in &self.returns {
            out.push_str(&format!(
                "return {} {} {} x{} {}\n",
                r.rma_id, r.order_id, r.line_id, r.quantity, r.status
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
