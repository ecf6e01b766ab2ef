//! The finance server: a company's accounts-payable, expense and ledger back office as
//! an AP specialist sees it, modelled on NetSuite (vendors, purchase orders, the general
//! ledger), Bill.com (invoice approval and payment runs) and SAP Concur (expense
//! reports). Amounts are integer cents in the document's currency; the approval matrix
//! and the expense policy are in USD, converted at the seed's fixed rate table (rates in
//! ten-thousandths, so no float ever decides a rule).
//!
//! Business rules the agent meets as in-band errors, each saying why and what is
//! allowed: approving an invoice whose purchase order has not passed the three-way
//! match, that looks like a duplicate of another live invoice, or above the approver's
//! tier of the approval matrix; an approval without the approver's single-use approval
//! id, or by the person who requested the purchase (segregation of duties); paying an
//! invoice that is not approved, into a closed run, or to a vendor whose bank change is
//! unverified; changing bank details without a call-back id that matches the vendor and
//! the account; approving an expense report with a line above the receipt threshold
//! and no receipt, with meals above the city's per-diem on a day, or one's own report;
//! a journal entry that does not balance, names an unknown account or falls in a closed
//! period.
//!
//! Approval ids and call-back ids are read from the seed but never shown: they must
//! come from the people (NPCs) who grant them.
//!
//! Over 600 lines: the AP, expense and ledger tools change the same private records (a
//! payment run pays invoices and posts to the ledger), so they stay together.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{documents, next_id, parse_date, spec, Ctx, Params, ToolServer, ToolSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub person_id: String,
    pub name: String,
    pub email: String,
    /// One of the approval matrix's roles, or `employee`.
    pub role: String,
    #[serde(default)]
    pub manager_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankDetails {
    pub account_number: String,
    pub routing_number: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    pub vendor_id: String,
    pub name: String,
    pub tax_id: String,
    pub contact_email: String,
    pub phone: String,
    pub address: String,
    /// `active` or `blocked`.
    pub status: String,
    pub bank: BankDetails,
    /// A change someone asked for and nobody has verified: payments wait for it.
    #[serde(default)]
    pub pending_bank_change: Option<BankDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_verified_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoLine {
    pub line: String,
    pub description: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
    /// Units received at the dock (the goods receipt).
    #[serde(default)]
    pub received: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseOrder {
    pub po_id: String,
    pub vendor_id: String,
    pub currency: String,
    pub requested_by: String,
    /// `open` or `closed`.
    pub status: String,
    pub lines: Vec<PoLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceLine {
    #[serde(default)]
    pub po_line: Option<String>,
    pub description: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invoice {
    pub invoice_id: String,
    pub vendor_id: String,
    /// The vendor's own number, as printed.
    pub invoice_number: String,
    #[serde(default)]
    pub po_id: Option<String>,
    pub currency: String,
    pub amount_cents: i64,
    pub invoice_date: String,
    pub due_date: String,
    /// `received`, `approved`, `scheduled`, `paid`, `rejected` or `on_hold`.
    pub status: String,
    /// Who asked for the purchase (may not approve it).
    pub requested_by: String,
    #[serde(default)]
    pub lines: Vec<InvoiceLine>,
    /// `unmatched`, `matched`, `exception` or `not_required` (no PO).
    #[serde(default = "unmatched")]
    pub match_status: String,
    #[serde(default)]
    pub match_notes: Vec<String>,
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub approval_id: Option<String>,
    #[serde(default)]
    pub status_reason: Option<String>,
}

fn unmatched() -> String {
    "unmatched".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRun {
    pub run_id: String,
    pub pay_date: String,
    /// `open` or `closed`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub payment_id: String,
    pub invoice_id: String,
    pub vendor_id: String,
    pub run_id: String,
    pub pay_date: String,
    pub currency: String,
    pub amount_cents: i64,
    pub account_number: String,
    pub scheduled_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpenseLine {
    pub line_id: String,
    pub date: String,
    /// `meals`, `lodging`, `airfare`, `ground`, `other`.
    pub category: String,
    pub description: String,
    pub currency: String,
    pub amount_cents: i64,
    #[serde(default)]
    pub receipt_ref: Option<String>,
    /// `pending`, `approved` (possibly reduced) or `rejected`.
    #[serde(default = "pending")]
    pub status: String,
    /// What is reimbursed, in the line's currency, when less than claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_cents: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn pending() -> String {
    "pending".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpenseReport {
    pub report_id: String,
    pub employee_id: String,
    pub title: String,
    /// The city whose per-diem applies.
    pub city: String,
    /// `submitted`, `approved` or `rejected`.
    pub status: String,
    pub lines: Vec<ExpenseLine>,
    /// USD cents reimbursed, set on approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reimbursable_usd_cents: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub account_id: String,
    pub name: String,
    /// `asset`, `liability`, `equity`, `revenue` or `expense`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Debit-positive opening balance in USD cents.
    pub opening_balance_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalLine {
    pub account_id: String,
    #[serde(default)]
    pub debit_cents: i64,
    #[serde(default)]
    pub credit_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalEntry {
    pub je_id: String,
    pub date: String,
    /// `YYYY-MM`.
    pub period: String,
    pub memo: String,
    pub lines: Vec<JournalLine>,
    pub posted_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub approval_id: String,
    pub invoice_id: String,
    pub approver_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    pub callback_id: String,
    pub vendor_id: String,
    pub account_number: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Inclusive upper bound in USD cents; `None` is unlimited.
    pub up_to_usd_cents: Option<i64>,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinanceServer {
    pub company: String,
    /// The person id the agent acts as (the AP specialist).
    pub actor: String,
    /// Currency → USD per unit, in ten-thousandths (1.0850 is 10850).
    pub fx_rates_to_usd: BTreeMap<String, i64>,
    /// Ascending; a role may approve up to its tier's bound.
    pub approval_matrix: Vec<Tier>,
    /// Unit-price tolerance of the three-way match, in basis points (200 = 2%).
    pub price_tolerance_bp: i64,
    /// Expense lines above this (USD cents) need a receipt.
    pub receipt_threshold_usd_cents: i64,
    /// Daily meals cap by city in USD cents; `default` for cities not listed.
    pub meal_per_diem_usd_cents: BTreeMap<String, i64>,
    /// `YYYY-MM` → `open` or `closed`.
    pub periods: BTreeMap<String, String>,
    #[serde(default)]
    pub people: Vec<Person>,
    #[serde(default)]
    pub vendors: Vec<Vendor>,
    #[serde(default)]
    pub purchase_orders: Vec<PurchaseOrder>,
    #[serde(default)]
    pub invoices: Vec<Invoice>,
    #[serde(default)]
    pub payment_runs: Vec<PaymentRun>,
    #[serde(default)]
    pub payments: Vec<Payment>,
    #[serde(default)]
    pub expense_reports: Vec<ExpenseReport>,
    #[serde(default)]
    pub accounts: Vec<Account>,
    #[serde(default)]
    pub journal_entries: Vec<JournalEntry>,
    /// Never shown: an approval id must come from the approver.
    #[serde(default, skip_serializing)]
    pub approvals: Vec<Approval>,
    /// Never shown: a call-back id must come from the vendor's contact on file.
    #[serde(default, skip_serializing)]
    pub callbacks: Vec<Callback>,
    /// The scenario's documents (the knowledge base); static, so not part of the state.
    #[serde(skip)]
    documents: BTreeMap<String, String>,
}

pub const INVOICE_STATUSES: &[&str] = &[
    "received",
    "approved",
    "scheduled",
    "paid",
    "rejected",
    "on_hold",
];
pub const EXPENSE_CATEGORIES: &[&str] = &["meals", "lodging", "airfare", "ground", "other"];

/// `USD 1,234.56` (negative amounts keep their sign).
pub fn money(cents: i64, currency: &str) -> String {
    super::money::amount(cents, &format!("{currency} "))
}

/// `cents` of a currency in USD cents at `rate` ten-thousandths, rounded half up.
pub fn to_usd(cents: i64, rate: i64) -> i64 {
    let x = i128::from(cents) * i128::from(rate);
    let r = (x.abs() + 5_000) / 10_000;
    let r = if x < 0 { -r } else { r };
    i64::try_from(r).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

/// Whether two vendor invoice numbers are the same once punctuation, case and leading
/// zeros are ignored (`INV-007781` and `7781`), the usual way a duplicate slips in.
pub fn same_invoice_number(a: &str, b: &str) -> bool {
    // Leading zeros of every run of digits are dropped, so AL-007781 is AL-7781.
    let norm = |s: &str| {
        let mut out = String::new();
        let mut prev_digit = false;
        for c in s.to_lowercase().chars().filter(char::is_ascii_alphanumeric) {
            let digit = c.is_ascii_digit();
            if c != '0' || prev_digit {
                out.push(c);
                prev_digit = digit;
            }
        }
        out
    };
    let (a, b) = (norm(a), norm(b));
    !a.is_empty() && a == b
}

fn cents_param(p: &Params, key: &str) -> Result<i64, String> {
    p.0.get(key)
        .and_then(Value::as_i64)
        .filter(|a| *a > 0)
        .ok_or_else(|| {
            format!("`{key}` must be a positive whole number of cents, e.g. 4599 for 45.99")
        })
}

fn reason_param<'a>(p: &Params<'a>) -> Result<&'a str, String> {
    let r = p.str("reason")?.trim();
    if r.len() < 3 {
        return Err("`reason` must say why (at least 3 characters)".into());
    }
    Ok(r)
}

impl FinanceServer {
    pub fn from_seed(seed: &Value, documents: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut s: FinanceServer = if seed.as_object().is_some_and(Map::is_empty) {
            FinanceServer {
                company: "Company".into(),
                actor: "ap".into(),
                fx_rates_to_usd: BTreeMap::from([("USD".to_string(), 10_000)]),
                approval_matrix: vec![Tier {
                    up_to_usd_cents: None,
                    role: "ap_specialist".into(),
                }],
                price_tolerance_bp: 200,
                receipt_threshold_usd_cents: 7_500,
                meal_per_diem_usd_cents: BTreeMap::from([("default".to_string(), 7_500)]),
                periods: BTreeMap::new(),
                people: Vec::new(),
                vendors: Vec::new(),
                purchase_orders: Vec::new(),
                invoices: Vec::new(),
                payment_runs: Vec::new(),
                payments: Vec::new(),
                expense_reports: Vec::new(),
                accounts: Vec::new(),
                journal_entries: Vec::new(),
                approvals: Vec::new(),
                callbacks: Vec::new(),
                documents: BTreeMap::new(),
            }
        } else {
            serde_json::from_value(seed.clone()).map_err(|e| e.to_string())?
        };
        s.documents = documents.clone();
        for i in &s.invoices {
            if !s.vendors.iter().any(|v| v.vendor_id == i.vendor_id) {
                return Err(format!(
                    "invoice {} has unknown vendor {}",
                    i.invoice_id, i.vendor_id
                ));
            }
            if !INVOICE_STATUSES.contains(&i.status.as_str()) {
                return Err(format!(
                    "invoice {} has unknown status `{}`",
                    i.invoice_id, i.status
                ));
            }
            if !s.fx_rates_to_usd.contains_key(&i.currency) {
                return Err(format!(
                    "invoice {} has currency {} without an FX rate",
                    i.invoice_id, i.currency
                ));
            }
        }
        for r in &s.expense_reports {
            for l in &r.lines {
                if !s.fx_rates_to_usd.contains_key(&l.currency) {
                    return Err(format!(
                        "expense {} {} has currency {} without an FX rate",
                        r.report_id, l.line_id, l.currency
                    ));
                }
            }
        }
        for p in &s.people {
            if p.role != "employee" && !s.approval_matrix.iter().any(|t| t.role == p.role) {
                return Err(format!(
                    "person {} has role `{}` outside the approval matrix",
                    p.person_id, p.role
                ));
            }
        }
        Ok(s)
    }

    fn rate(&self, currency: &str) -> Result<i64, String> {
        self.fx_rates_to_usd.get(currency).copied().ok_or_else(|| {
            format!(
                "no FX rate for {currency}; rates exist for {}",
                self.fx_rates_to_usd
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    fn usd(&self, cents: i64, currency: &str) -> i64 {
        self.rate(currency)
            .map(|r| to_usd(cents, r))
            .unwrap_or(cents)
    }

    fn person(&self, id: &str) -> Result<&Person, String> {
        let id = id.trim();
        self.people
            .iter()
            .find(|p| p.person_id.eq_ignore_ascii_case(id) || p.email.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                format!(
                    "no person `{id}`. People: {}",
                    self.people
                        .iter()
                        .map(|p| format!("{} ({}, {})", p.person_id, p.name, p.role))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })
    }

    fn vendor_index(&self, id: &str) -> Result<usize, String> {
        let id = id.trim();
        self.vendors
            .iter()
            .position(|v| v.vendor_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                format!("no vendor `{id}`. Use search_vendors to find vendor ids (like V-1001)")
            })
    }

    fn invoice_index(&self, id: &str) -> Result<usize, String> {
        let id = id.trim();
        self.invoices
            .iter()
            .position(|i| i.invoice_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                format!("no invoice `{id}`. Use list_invoices to find invoice ids (like INV-0001); the vendor's own number is `invoice_number`")
            })
    }

    fn po(&self, id: &str) -> Result<&PurchaseOrder, String> {
        let id = id.trim();
        self.purchase_orders
            .iter()
            .find(|p| p.po_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| format!("no purchase order `{id}`. Use list_purchase_orders"))
    }

    fn report_index(&self, id: &str) -> Result<usize, String> {
        let id = id.trim();
        self.expense_reports
            .iter()
            .position(|r| r.report_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| format!("no expense report `{id}`. Use list_expense_reports"))
    }

    fn line_index(&self, r: usize, line: &str) -> Result<usize, String> {
        let rep = &self.expense_reports[r];
        rep.lines
            .iter()
            .position(|l| l.line_id.eq_ignore_ascii_case(line.trim()))
            .ok_or_else(|| {
                format!(
                    "report {} has no line `{}`; its lines are {}",
                    rep.report_id,
                    line.trim(),
                    rep.lines
                        .iter()
                        .map(|l| l.line_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Rank of a role in the matrix (higher approves more); `None` for none.
    fn rank(&self, role: &str) -> Option<usize> {
        self.approval_matrix.iter().position(|t| t.role == role)
    }

    /// The lowest tier that covers `usd` cents.
    fn required_tier(&self, usd: i64) -> Option<(usize, &Tier)> {
        self.approval_matrix
            .iter()
            .enumerate()
            .find(|(_, t)| t.up_to_usd_cents.is_none_or(|m| usd <= m))
    }

    /// Another live invoice of the same vendor with the same number and amount.
    fn duplicate_of(&self, inv: &Invoice) -> Option<&Invoice> {
        self.invoices.iter().find(|o| {
            o.invoice_id != inv.invoice_id
                && o.vendor_id == inv.vendor_id
                && o.status != "rejected"
                && o.amount_cents == inv.amount_cents
                && same_invoice_number(&o.invoice_number, &inv.invoice_number)
        })
    }

    /// Units of a PO line billed by other live invoices.
    fn billed_elsewhere(&self, inv: &Invoice, po_line: &str) -> i64 {
        self.invoices
            .iter()
            .filter(|o| {
                o.invoice_id != inv.invoice_id
                    && o.po_id == inv.po_id
                    && matches!(o.status.as_str(), "approved" | "scheduled" | "paid")
            })
            .flat_map(|o| o.lines.iter())
            .filter(|l| l.po_line.as_deref() == Some(po_line))
            .map(|l| l.quantity)
            .fold(0i64, i64::saturating_add)
    }

    /// The three-way match: every billed line against its PO line (price within the
    /// tolerance) and the goods receipt (quantity received minus already billed).
    fn three_way(&self, inv: &Invoice) -> Result<Vec<String>, String> {
        let Some(po_id) = &inv.po_id else {
            return Ok(Vec::new());
        };
        let po = self.po(po_id)?;
        let mut problems = Vec::new();
        if po.vendor_id != inv.vendor_id {
            problems.push(format!(
                "PO {} is for vendor {}, the invoice is from {}",
                po.po_id, po.vendor_id, inv.vendor_id
            ));
        }
        if po.currency != inv.currency {
            problems.push(format!(
                "PO {} is in {}, the invoice in {}",
                po.po_id, po.currency, inv.currency
            ));
        }
        let mut total = 0i64;
        for l in &inv.lines {
            total = total.saturating_add(l.quantity.saturating_mul(l.unit_price_cents));
            let Some(pl) = l
                .po_line
                .as_deref()
                .and_then(|n| po.lines.iter().find(|x| x.line == n))
            else {
                problems.push(format!(
                    "invoice line `{}` names no line of PO {}",
                    l.description, po.po_id
                ));
                continue;
            };
            let cap = i128::from(pl.unit_price_cents)
                * (10_000 + i128::from(self.price_tolerance_bp))
                / 10_000;
            if i128::from(l.unit_price_cents) > cap {
                problems.push(format!(
                    "line {}: unit price {} is above PO price {} plus the {}.{:02}% tolerance",
                    pl.line,
                    money(l.unit_price_cents, &inv.currency),
                    money(pl.unit_price_cents, &po.currency),
                    self.price_tolerance_bp / 100,
                    self.price_tolerance_bp % 100
                ));
            }
            let open = pl
                .received
                .saturating_sub(self.billed_elsewhere(inv, &pl.line));
            if l.quantity > open {
                problems.push(format!(
                    "line {}: {} units billed but only {} received and not yet billed ({} ordered, {} received)",
                    pl.line, l.quantity, open.max(0), pl.quantity, pl.received
                ));
            }
        }
        if !inv.lines.is_empty() && total != inv.amount_cents {
            problems.push(format!(
                "the lines add up to {} but the invoice total is {}",
                money(total, &inv.currency),
                money(inv.amount_cents, &inv.currency)
            ));
        }
        Ok(problems)
    }

    fn invoice_view(&self, inv: &Invoice) -> Value {
        let mut v = serde_json::to_value(inv).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            let usd = self.usd(inv.amount_cents, &inv.currency);
            m.insert(
                "amount".into(),
                json!(money(inv.amount_cents, &inv.currency)),
            );
            m.insert("amount_usd_cents".into(), json!(usd));
            m.insert(
                "vendor_name".into(),
                json!(self
                    .vendors
                    .iter()
                    .find(|v| v.vendor_id == inv.vendor_id)
                    .map(|v| v.name.clone())),
            );
            m.insert(
                "approver_role_required".into(),
                json!(self.required_tier(usd).map(|(_, t)| t.role.clone())),
            );
            if let Some(d) = self.duplicate_of(inv) {
                m.insert("possible_duplicate_of".into(), json!(d.invoice_id));
            }
            m.insert(
                "payments".into(),
                json!(self
                    .payments
                    .iter()
                    .filter(|p| p.invoice_id == inv.invoice_id)
                    .collect::<Vec<_>>()),
            );
        }
        v
    }

    fn invoice_summary(&self, inv: &Invoice) -> Value {
        json!({
            "invoice_id": inv.invoice_id, "vendor_id": inv.vendor_id, "invoice_number": inv.invoice_number,
            "po_id": inv.po_id, "amount": money(inv.amount_cents, &inv.currency), "amount_cents": inv.amount_cents,
            "currency": inv.currency, "due_date": inv.due_date, "status": inv.status, "match_status": inv.match_status,
        })
    }

    /// Rules an expense report must meet before approval, as the first problem found.
    fn expense_problem(&self, r: &ExpenseReport) -> Option<String> {
        let mut meals: BTreeMap<&str, i64> = BTreeMap::new();
        for l in r.lines.iter().filter(|l| l.status != "rejected") {
            let usd = self.usd(l.amount_cents, &l.currency);
            if usd > self.receipt_threshold_usd_cents && l.receipt_ref.is_none() {
                return Some(format!(
                    "line {} ({}, {}) has no receipt and is above the {} receipt threshold: ask the employee for the receipt reference and attach it with add_expense_receipt, or reject the line with reject_expense_line",
                    l.line_id, l.description, money(l.amount_cents, &l.currency), money(self.receipt_threshold_usd_cents, "USD")
                ));
            }
            if l.category == "meals" {
                let claimed = l.approved_cents.unwrap_or(l.amount_cents);
                let e = meals.entry(l.date.as_str()).or_insert(0);
                *e = e.saturating_add(self.usd(claimed, &l.currency));
            }
        }
        let cap = self.per_diem(&r.city);
        for (day, total) in meals {
            if total > cap {
                return Some(format!(
                    "meals on {day} come to {} (USD), above the {} per-diem of {}: reduce a meals line that day with reduce_expense_line (by at least {}) or reject it",
                    money(total, "USD"), r.city, money(cap, "USD"), money(total.saturating_sub(cap), "USD")
                ));
            }
        }
        None
    }

    fn per_diem(&self, city: &str) -> i64 {
        self.meal_per_diem_usd_cents
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(city))
            .or_else(|| self.meal_per_diem_usd_cents.get_key_value("default"))
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }

    fn reimbursable(&self, r: &ExpenseReport) -> i64 {
        r.lines
            .iter()
            .filter(|l| l.status != "rejected")
            .map(|l| self.usd(l.approved_cents.unwrap_or(l.amount_cents), &l.currency))
            .fold(0i64, i64::saturating_add)
    }

    fn balance(&self, a: &Account) -> i64 {
        self.journal_entries
            .iter()
            .flat_map(|j| j.lines.iter())
            .filter(|l| l.account_id == a.account_id)
            .fold(a.opening_balance_cents, |b, l| {
                b.saturating_add(l.debit_cents)
                    .saturating_sub(l.credit_cents)
            })
    }

    fn open_report(&mut self, report_id: &str) -> Result<usize, String> {
        let r = self.report_index(report_id)?;
        let rep = &self.expense_reports[r];
        if rep.status != "submitted" {
            return Err(format!(
                "report {} is already {}; only submitted reports can change",
                rep.report_id, rep.status
            ));
        }
        Ok(r)
    }

    fn step_inner(&mut self, ctx: &Ctx, tool: &str, p: &Params) -> Result<Value, String> {
        match tool {
            "search_vendors"
            | "get_vendor"
            | "update_vendor_bank"
            | "list_purchase_orders"
            | "get_purchase_order" => self.vendor_step(tool, p),
            "list_invoices" | "get_invoice" | "match_invoice" | "approve_invoice"
            | "reject_invoice" | "hold_invoice" | "list_payment_runs" | "schedule_payment" => {
                self.invoice_step(ctx, tool, p)
            }
            "list_expense_reports"
            | "get_expense_report"
            | "add_expense_receipt"
            | "reduce_expense_line"
            | "reject_expense_line"
            | "approve_expense" => self.expense_step(tool, p),
            "post_journal_entry" | "get_account_balance" | "list_accounts" => {
                self.ledger_step(ctx, tool, p)
            }
            "search_kb" => Ok(documents::search(&self.documents, p.opt_str("query"))),
            "read_kb_article" => documents::read_article(&self.documents, p.str("article_id")?),
            other => Err(format!("unknown tool `{other}` on the finance server")),
        }
    }

    /// Vendors and purchase orders.
    fn vendor_step(&mut self, tool: &str, p: &Params) -> Result<Value, String> {
        match tool {
            "search_vendors" => {
                let q = p.opt_str("query").unwrap_or("").trim().to_lowercase();
                let hits: Vec<Value> = self
                    .vendors
                    .iter()
                    .filter(|v| {
                        q.is_empty()
                            || [&v.vendor_id, &v.name, &v.tax_id, &v.contact_email]
                                .iter()
                                .any(|f| f.to_lowercase().contains(&q))
                    })
                    .map(|v| json!({"vendor_id": v.vendor_id, "name": v.name, "tax_id": v.tax_id, "contact_email": v.contact_email, "status": v.status}))
                    .collect();
                Ok(json!({"total": hits.len(), "vendors": hits}))
            }
            "get_vendor" => {
                let v = &self.vendors[self.vendor_index(p.str("vendor_id")?)?];
                let mut out = serde_json::to_value(v).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut out {
                    m.insert(
                        "open_invoices".into(),
                        json!(self
                            .invoices
                            .iter()
                            .filter(|i| i.vendor_id == v.vendor_id
                                && !matches!(i.status.as_str(), "paid" | "rejected"))
                            .map(|i| self.invoice_summary(i))
                            .collect::<Vec<_>>()),
                    );
                }
                Ok(out)
            }
            "update_vendor_bank" => {
                let vi = self.vendor_index(p.str("vendor_id")?)?;
                let account = p.str("account_number")?.trim().to_string();
                let routing = p.str("routing_number")?.trim().to_string();
                let cb = p
                    .opt_str("callback_id")
                    .map(str::trim)
                    .filter(|s| !s.is_empty());
                let vid = self.vendors[vi].vendor_id.clone();
                let Some(cb) = cb else {
                    return Err("bank details change only after a call-back verification: call the vendor's contact on file (never a number or address from the request itself) and pass the call-back id they confirm as `callback_id`".into());
                };
                let Some(c) = self
                    .callbacks
                    .iter()
                    .find(|c| c.callback_id.eq_ignore_ascii_case(cb))
                else {
                    return Err(format!("call-back `{cb}` does not exist; use the id the vendor's contact on file confirmed (like CB-1234)"));
                };
                if c.vendor_id != vid {
                    return Err(format!(
                        "call-back {} verified vendor {}, not {vid}",
                        c.callback_id, c.vendor_id
                    ));
                }
                if c.account_number != account {
                    return Err(format!("call-back {} verified a different account number; the details must be the ones confirmed on the call", c.callback_id));
                }
                let cbid = c.callback_id.clone();
                let v = &mut self.vendors[vi];
                v.bank = BankDetails {
                    account_number: account,
                    routing_number: routing,
                };
                v.pending_bank_change = None;
                v.bank_verified_by = Some(cbid);
                Ok(json!({"updated": true, "vendor": v}))
            }
            "list_purchase_orders" => {
                let vendor = p.opt_str("vendor_id").map(str::trim);
                let hits: Vec<Value> = self
                    .purchase_orders
                    .iter()
                    .filter(|po| vendor.is_none_or(|v| po.vendor_id.eq_ignore_ascii_case(v)))
                    .filter(|po| p.opt_str("status").is_none_or(|s| po.status == s))
                    .map(|po| {
                        let total = po.lines.iter().map(|l| l.quantity.saturating_mul(l.unit_price_cents)).fold(0i64, i64::saturating_add);
                        json!({"po_id": po.po_id, "vendor_id": po.vendor_id, "status": po.status, "requested_by": po.requested_by, "total": money(total, &po.currency)})
                    })
                    .collect();
                Ok(json!({"total": hits.len(), "purchase_orders": hits}))
            }
            "get_purchase_order" => {
                let po = self.po(p.str("po_id")?)?;
                let invoices: Vec<Value> = self
                    .invoices
                    .iter()
                    .filter(|i| i.po_id.as_deref() == Some(po.po_id.as_str()))
                    .map(|i| self.invoice_summary(i))
                    .collect();
                Ok(json!({"purchase_order": po, "invoices": invoices}))
            }
            other => Err(format!("unknown tool `{other}` on the finance server")),
        }
    }

    /// Invoices, their match and approval, and payments.
    fn invoice_step(&mut self, ctx: &Ctx, tool: &str, p: &Params) -> Result<Value, String> {
        let now = ctx.now_text();
        let today = ctx.now.date_naive();
        match tool {
            "list_invoices" => {
                let vendor = p.opt_str("vendor_id").map(str::trim);
                let status = p.opt_str("status");
                let q = p.opt_str("query").unwrap_or("").trim().to_lowercase();
                let hits: Vec<Value> = self
                    .invoices
                    .iter()
                    .filter(|i| vendor.is_none_or(|v| i.vendor_id.eq_ignore_ascii_case(v)))
                    .filter(|i| status.is_none_or(|s| i.status == s))
                    .filter(|i| {
                        q.is_empty()
                            || i.invoice_number.to_lowercase().contains(&q)
                            || i.invoice_id.to_lowercase().contains(&q)
                    })
                    .map(|i| self.invoice_summary(i))
                    .collect();
                Ok(json!({"total": hits.len(), "invoices": hits}))
            }
            "get_invoice" => {
                Ok(self.invoice_view(&self.invoices[self.invoice_index(p.str("invoice_id")?)?]))
            }
            "match_invoice" => {
                let i = self.invoice_index(p.str("invoice_id")?)?;
                let inv = &self.invoices[i];
                if inv.po_id.is_none() {
                    return Err(format!("invoice {} has no purchase order, so there is nothing to match; non-PO invoices go straight to approval", inv.invoice_id));
                }
                if !matches!(inv.status.as_str(), "received" | "on_hold") {
                    return Err(format!(
                        "invoice {} is {}; only received or on-hold invoices are matched",
                        inv.invoice_id, inv.status
                    ));
                }
                let problems = self.three_way(inv)?;
                let inv = &mut self.invoices[i];
                inv.match_status = if problems.is_empty() {
                    "matched"
                } else {
                    "exception"
                }
                .into();
                inv.match_notes = problems.clone();
                Ok(
                    json!({"invoice_id": inv.invoice_id, "match_status": inv.match_status, "problems": problems,
                    "next": if problems.is_empty() { "approve_invoice" } else { "hold_invoice with the reason, and ask the requester or vendor to resolve it" }}),
                )
            }
            "approve_invoice" => {
                let i = self.invoice_index(p.str("invoice_id")?)?;
                let approver = self.person(p.str("approver")?)?.clone();
                let inv = &self.invoices[i];
                if !matches!(inv.status.as_str(), "received" | "on_hold") {
                    return Err(format!(
                        "invoice {} is {}; only received or on-hold invoices can be approved",
                        inv.invoice_id, inv.status
                    ));
                }
                if let Some(d) = self.duplicate_of(inv) {
                    return Err(format!("invoice {} looks like a duplicate of {} (same vendor, invoice number and amount); reject the duplicate with reject_invoice instead", inv.invoice_id, d.invoice_id));
                }
                if inv.po_id.is_some() && inv.match_status != "matched" {
                    return Err(format!("invoice {} is a PO invoice whose three-way match is `{}`; run match_invoice and approve only a matched invoice", inv.invoice_id, inv.match_status));
                }
                let usd = self.usd(inv.amount_cents, &inv.currency);
                let Some((need, tier)) = self.required_tier(usd) else {
                    return Err("the approval matrix has no tier for this amount".into());
                };
                let have = self.rank(&approver.role);
                if have.is_none_or(|h| h < need) {
                    let who: Vec<String> = self
                        .people
                        .iter()
                        .filter(|x| self.rank(&x.role).is_some_and(|r| r >= need))
                        .map(|x| format!("{} <{}> ({})", x.name, x.email, x.role))
                        .collect();
                    return Err(format!(
                        "{} ({}, {} at the rate table) needs an approver of role {} or above under the approval matrix; {} is {}. Eligible: {}",
                        inv.invoice_id, money(inv.amount_cents, &inv.currency), money(usd, "USD"), tier.role, approver.name, approver.role, who.join("; ")
                    ));
                }
                let requester = self
                    .po(inv.po_id.as_deref().unwrap_or(""))
                    .map(|po| po.requested_by.clone())
                    .unwrap_or_else(|_| inv.requested_by.clone());
                if approver.person_id == inv.requested_by || approver.person_id == requester {
                    return Err(format!("segregation of duties: {} requested this purchase and may not approve it; ask another approver of role {} or above", approver.name, tier.role));
                }
                let approval_id = if approver.person_id == self.actor {
                    None
                } else {
                    let Some(aid) = p
                        .opt_str("approval_id")
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                    else {
                        return Err(format!("{} must approve this themselves: email them the invoice id, vendor and amount and pass the approval id from their reply as `approval_id`", approver.name));
                    };
                    let Some(a) = self
                        .approvals
                        .iter()
                        .find(|a| a.approval_id.eq_ignore_ascii_case(aid))
                    else {
                        return Err(format!("approval `{aid}` does not exist; use the id the approver gave you (like APV-3101)"));
                    };
                    if !a.invoice_id.eq_ignore_ascii_case(&inv.invoice_id)
                        || a.approver_id != approver.person_id
                    {
                        return Err(format!(
                            "approval {} was given by {} for {}, not by {} for {}",
                            a.approval_id,
                            a.approver_id,
                            a.invoice_id,
                            approver.person_id,
                            inv.invoice_id
                        ));
                    }
                    if self
                        .invoices
                        .iter()
                        .any(|x| x.approval_id.as_deref() == Some(a.approval_id.as_str()))
                    {
                        return Err(format!(
                            "approval {} was already used; approvals are single use",
                            a.approval_id
                        ));
                    }
                    Some(a.approval_id.clone())
                };
                let inv = &mut self.invoices[i];
                inv.status = "approved".into();
                inv.approved_by = Some(approver.person_id.clone());
                inv.approval_id = approval_id;
                inv.status_reason = None;
                Ok(json!({"approved": true, "invoice": self.invoice_summary(&self.invoices[i])}))
            }
            "reject_invoice" | "hold_invoice" => {
                let i = self.invoice_index(p.str("invoice_id")?)?;
                let reason = reason_param(p)?.to_string();
                let inv = &mut self.invoices[i];
                let allowed: &[&str] = if tool == "reject_invoice" {
                    &["received", "on_hold", "approved"]
                } else {
                    &["received", "approved"]
                };
                if !allowed.contains(&inv.status.as_str()) {
                    return Err(format!(
                        "invoice {} is {}; {tool} works on {} invoices",
                        inv.invoice_id,
                        inv.status,
                        allowed.join(" or ")
                    ));
                }
                inv.status = if tool == "reject_invoice" {
                    "rejected"
                } else {
                    "on_hold"
                }
                .into();
                inv.status_reason = Some(reason);
                Ok(json!({"invoice": self.invoice_summary(&self.invoices[i])}))
            }
            "list_payment_runs" => Ok(json!({"payment_runs": self.payment_runs})),
            "schedule_payment" => {
                let i = self.invoice_index(p.str("invoice_id")?)?;
                let run_id = p.str("run_id")?.trim();
                let run = self
                    .payment_runs
                    .iter()
                    .find(|r| r.run_id.eq_ignore_ascii_case(run_id))
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "no payment run `{run_id}`. Runs: {}",
                            self.payment_runs
                                .iter()
                                .map(|r| format!("{} ({}, {})", r.run_id, r.pay_date, r.status))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                let inv = &self.invoices[i];
                if inv.status != "approved" {
                    return Err(format!(
                        "invoice {} is {}; only approved invoices can be scheduled",
                        inv.invoice_id, inv.status
                    ));
                }
                if run.status != "open" {
                    return Err(format!(
                        "payment run {} is {}; choose an open run",
                        run.run_id, run.status
                    ));
                }
                if parse_date(&run.pay_date).is_some_and(|d| d < today) {
                    return Err(format!(
                        "payment run {} paid on {}, which is past",
                        run.run_id, run.pay_date
                    ));
                }
                let v = &self.vendors[self.vendor_index(&inv.vendor_id)?];
                if v.status != "active" {
                    return Err(format!(
                        "vendor {} is {}; no payments",
                        v.vendor_id, v.status
                    ));
                }
                if v.pending_bank_change.is_some() {
                    return Err(format!("vendor {} has an unverified bank details change; no payment until it is verified by call-back (see the AP policy). Put the invoice on hold meanwhile", v.vendor_id));
                }
                let payment = Payment {
                    payment_id: next_id(
                        "PAY-",
                        4,
                        self.payments.iter().map(|x| x.payment_id.as_str()),
                    ),
                    invoice_id: inv.invoice_id.clone(),
                    vendor_id: v.vendor_id.clone(),
                    run_id: run.run_id.clone(),
                    pay_date: run.pay_date.clone(),
                    currency: inv.currency.clone(),
                    amount_cents: inv.amount_cents,
                    account_number: v.bank.account_number.clone(),
                    scheduled_at: now,
                };
                self.invoices[i].status = "scheduled".into();
                self.payments.push(payment.clone());
                Ok(json!({"scheduled": true, "payment": payment}))
            }
            other => Err(format!("unknown tool `{other}` on the finance server")),
        }
    }

    /// Expense reports.
    fn expense_step(&mut self, tool: &str, p: &Params) -> Result<Value, String> {
        match tool {
            "list_expense_reports" => {
                let status = p.opt_str("status");
                let emp = p.opt_str("employee_id").map(str::trim);
                let hits: Vec<Value> = self
                    .expense_reports
                    .iter()
                    .filter(|r| status.is_none_or(|s| r.status == s))
                    .filter(|r| emp.is_none_or(|e| r.employee_id.eq_ignore_ascii_case(e)))
                    .map(|r| json!({"report_id": r.report_id, "employee_id": r.employee_id, "title": r.title, "city": r.city, "status": r.status, "lines": r.lines.len()}))
                    .collect();
                Ok(json!({"total": hits.len(), "expense_reports": hits}))
            }
            "get_expense_report" => {
                let r = &self.expense_reports[self.report_index(p.str("report_id")?)?];
                let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert(
                        "employee".into(),
                        json!(self.people.iter().find(|x| x.person_id == r.employee_id)),
                    );
                    m.insert(
                        "meal_per_diem_usd_cents".into(),
                        json!(self.per_diem(&r.city)),
                    );
                    m.insert("policy_problem".into(), json!(self.expense_problem(r)));
                }
                Ok(v)
            }
            "add_expense_receipt" | "reduce_expense_line" | "reject_expense_line" => {
                let r = self.open_report(p.str("report_id")?)?;
                let l = self.line_index(r, p.str("line_id")?)?;
                let line = &self.expense_reports[r].lines[l];
                if line.status == "rejected" {
                    return Err(format!("line {} is already rejected", line.line_id));
                }
                let reason = match tool {
                    "add_expense_receipt" => String::new(),
                    _ => reason_param(p)?.to_string(),
                };
                let line = &mut self.expense_reports[r].lines[l];
                match tool {
                    "add_expense_receipt" => {
                        let rc = p.str("receipt_ref")?.trim();
                        if rc.len() < 3 {
                            return Err("`receipt_ref` must be the receipt reference the employee gave (like RCPT-88213)".into());
                        }
                        line.receipt_ref = Some(rc.to_string());
                    }
                    "reduce_expense_line" => {
                        let amount = cents_param(p, "amount_cents")?;
                        if amount >= line.amount_cents {
                            return Err(format!("reduce_expense_line only lowers a line: {} claimed {}, so give less than {} cents", line.line_id, money(line.amount_cents, &line.currency), line.amount_cents));
                        }
                        line.approved_cents = Some(amount);
                        line.reason = Some(reason);
                    }
                    _ => {
                        line.status = "rejected".into();
                        line.reason = Some(reason);
                    }
                }
                Ok(json!({"line": self.expense_reports[r].lines[l]}))
            }
            "approve_expense" => {
                let r = self.open_report(p.str("report_id")?)?;
                let rep = &self.expense_reports[r];
                if rep.employee_id == self.actor {
                    return Err(format!("{} is your own report: nobody approves their own expenses. Send it to your manager for approval", rep.report_id));
                }
                if let Some(problem) = self.expense_problem(rep) {
                    return Err(problem);
                }
                let total = self.reimbursable(rep);
                let rep = &mut self.expense_reports[r];
                for l in rep.lines.iter_mut().filter(|l| l.status == "pending") {
                    l.status = "approved".into();
                }
                rep.status = "approved".into();
                rep.reimbursable_usd_cents = Some(total);
                Ok(
                    json!({"approved": true, "report_id": rep.report_id, "reimbursable": money(total, "USD"), "reimbursable_usd_cents": total}),
                )
            }
            other => Err(format!("unknown tool `{other}` on the finance server")),
        }
    }

    /// The general ledger.
    fn ledger_step(&mut self, ctx: &Ctx, tool: &str, p: &Params) -> Result<Value, String> {
        let now = ctx.now_text();
        match tool {
            "post_journal_entry" => {
                let date_text = p.str("date")?.trim();
                let date: NaiveDate = parse_date(date_text)
                    .ok_or_else(|| format!("`date` must be like 2026-03-31, got {date_text:?}"))?;
                let memo = p.str("memo")?.trim();
                if memo.len() < 3 {
                    return Err("`memo` must say what the entry is for".into());
                }
                let period = date.format("%Y-%m").to_string();
                match self.periods.get(&period).map(String::as_str) {
                    Some("open") => {}
                    Some(status) => {
                        let open: Vec<&String> = self
                            .periods
                            .iter()
                            .filter(|(_, s)| *s == "open")
                            .map(|(k, _)| k)
                            .collect();
                        return Err(format!("period {period} is {status}; no postings. Open periods: {open:?} (see the close calendar for how late entries are booked)"));
                    }
                    None => {
                        return Err(format!(
                            "period {period} does not exist; periods are {:?}",
                            self.periods.keys().collect::<Vec<_>>()
                        ))
                    }
                }
                let raw =
                    p.0.get("lines").and_then(Value::as_array).ok_or(
                        "`lines` must be a list of {account_id, debit_cents | credit_cents}",
                    )?;
                let mut lines = Vec::new();
                for (k, l) in raw.iter().enumerate() {
                    let account_id = l
                        .get("account_id")
                        .and_then(Value::as_str)
                        .map(str::trim)
                        .unwrap_or("");
                    if !self.accounts.iter().any(|a| a.account_id == account_id) {
                        return Err(format!(
                            "line {k}: unknown account `{account_id}`; use list_accounts"
                        ));
                    }
                    let amt = |key: &str| {
                        l.get(key).map(|v| v.as_i64().filter(|x| *x >= 0).ok_or(format!("line {k}: `{key}` must be a non-negative whole number of cents"))).transpose()
                    };
                    let debit = amt("debit_cents")?.unwrap_or(0);
                    let credit = amt("credit_cents")?.unwrap_or(0);
                    if (debit > 0) == (credit > 0) {
                        return Err(format!("line {k}: give exactly one of a positive `debit_cents` or `credit_cents`"));
                    }
                    lines.push(JournalLine {
                        account_id: account_id.to_string(),
                        debit_cents: debit,
                        credit_cents: credit,
                    });
                }
                if lines.len() < 2 {
                    return Err("a journal entry needs at least two lines".into());
                }
                let dr = lines
                    .iter()
                    .map(|l| i128::from(l.debit_cents))
                    .sum::<i128>();
                let cr = lines
                    .iter()
                    .map(|l| i128::from(l.credit_cents))
                    .sum::<i128>();
                if dr != cr {
                    return Err(format!("the entry does not balance: debits {dr} cents, credits {cr} cents; debits must equal credits"));
                }
                let je = JournalEntry {
                    je_id: next_id(
                        "JE-",
                        4,
                        self.journal_entries.iter().map(|j| j.je_id.as_str()),
                    ),
                    date: date.to_string(),
                    period,
                    memo: memo.to_string(),
                    lines,
                    posted_at: now,
                };
                self.journal_entries.push(je.clone());
                Ok(json!({"posted": true, "journal_entry": je}))
            }
            "get_account_balance" => {
                let id = p.str("account_id")?.trim();
                let a = self
                    .accounts
                    .iter()
                    .find(|a| a.account_id == id)
                    .ok_or_else(|| format!("no account `{id}`; use list_accounts"))?;
                let b = self.balance(a);
                Ok(
                    json!({"account_id": a.account_id, "name": a.name, "type": a.kind, "balance_cents": b, "balance": money(b, "USD"), "sign": "debit-positive: liabilities and revenue show negative balances"}),
                )
            }
            "list_accounts" => Ok(
                json!({"accounts": self.accounts.iter().map(|a| json!({"account_id": a.account_id, "name": a.name, "type": a.kind})).collect::<Vec<_>>(), "periods": self.periods}),
            ),
            other => Err(format!("unknown tool `{other}` on the finance server")),
        }
    }
}

impl ToolServer for FinanceServer {
    fn name(&self) -> &'static str {
        "finance"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        let obj = |required: Vec<&str>, props: Value| json!({"type": "object", "additionalProperties": false, "required": required, "properties": props});
        let id = |d: &str| json!({"type": "string", "minLength": 1, "description": d});
        let text = |d: &str| json!({"type": "string", "description": d});
        let reason =
            json!({"type": "string", "minLength": 3, "description": "Why (kept on the record)"});
        let invoice = id("Our invoice id like INV-0001 (not the vendor's number)");
        let report = id("Expense report id like EXP-0001");
        let line = id("Expense line id like L2");
        vec![
            spec("search_vendors", "Search vendors by name, id, tax id or contact email (substring, case-insensitive). Names can be similar: compare tax ids.", false, obj(vec![], json!({"query": text("Part of a name, id, tax id or email; empty lists all")}))),
            spec("get_vendor", "A vendor's record: contact on file, bank details, any pending (unverified) bank change, and open invoices.", false, obj(vec!["vendor_id"], json!({"vendor_id": id("Vendor id like V-1001")}))),
            spec("update_vendor_bank", "Change a vendor's bank details. Needs the call-back id from verifying the change with the vendor's contact on file (AP policy).", true, obj(vec!["vendor_id", "account_number", "routing_number"], json!({
                "vendor_id": id("Vendor id"), "account_number": id("New account number"), "routing_number": id("New routing number"), "callback_id": text("Call-back verification id like CB-1234 (required; see the AP policy)"),
            }))),
            spec("list_purchase_orders", "List purchase orders, optionally by vendor and status.", false, obj(vec![], json!({"vendor_id": text("Vendor id"), "status": {"type": "string", "enum": ["open", "closed"]}}))),
            spec("get_purchase_order", "A purchase order: lines with ordered and received quantities and unit prices, requester, and the invoices billed against it.", false, obj(vec!["po_id"], json!({"po_id": id("PO id like PO-2001")}))),
            spec("list_invoices", "List invoices by vendor, status or number (substring of our id or the vendor's number).", false, obj(vec![], json!({"vendor_id": text("Vendor id"), "status": {"type": "string", "enum": INVOICE_STATUSES}, "query": text("Part of an invoice number")}))),
            spec("get_invoice", "An invoice in full: lines, amount (and its USD equivalent), due date, status, match result, the approver role the approval matrix requires, a possible duplicate, payments.", false, obj(vec!["invoice_id"], json!({"invoice_id": invoice}))),
            spec("match_invoice", "Run the three-way match of a PO invoice (PO price within tolerance, quantities received and not yet billed, lines adding up). Records `matched` or `exception` with the problems.", true, obj(vec!["invoice_id"], json!({"invoice_id": invoice}))),
            spec("approve_invoice", "Approve an invoice for payment as `approver` (person id or email). The approver's role must cover the USD amount under the approval matrix and may not be the purchase's requester; anyone but you needs their `approval_id`. PO invoices must be matched first.", true, obj(vec!["invoice_id", "approver"], json!({
                "invoice_id": invoice, "approver": id("Person id like P-101 or their email"), "approval_id": text("The approver's approval id like APV-3101"),
            }))),
            spec("reject_invoice", "Reject an invoice (duplicate, not ours, wrong amount...). It will never be paid.", true, obj(vec!["invoice_id", "reason"], json!({"invoice_id": invoice, "reason": reason.clone()}))),
            spec("hold_invoice", "Put an invoice on hold with the reason (match exception, unverified bank change, dispute). It can be matched and approved later.", true, obj(vec!["invoice_id", "reason"], json!({"invoice_id": invoice, "reason": reason.clone()}))),
            spec("list_payment_runs", "The payment runs with their pay dates and whether they are open.", false, obj(vec![], json!({}))),
            spec("schedule_payment", "Schedule an approved invoice's payment in an open payment run (to the vendor's verified bank account).", true, obj(vec!["invoice_id", "run_id"], json!({"invoice_id": invoice, "run_id": id("Payment run id like RUN-0312")}))),
            spec("list_expense_reports", "List expense reports by status or employee.", false, obj(vec![], json!({"status": {"type": "string", "enum": ["submitted", "approved", "rejected"]}, "employee_id": text("Person id")}))),
            spec("get_expense_report", "An expense report: lines (date, category, amount, currency, receipt), the employee, the city's meal per-diem and the first policy problem, if any.", false, obj(vec!["report_id"], json!({"report_id": report.clone()}))),
            spec("add_expense_receipt", "Attach a receipt reference to an expense line.", true, obj(vec!["report_id", "line_id", "receipt_ref"], json!({"report_id": report.clone(), "line_id": line.clone(), "receipt_ref": id("Receipt reference like RCPT-88213")}))),
            spec("reduce_expense_line", "Reimburse less than claimed on one line (e.g. meals above the per-diem); `amount_cents` is what is reimbursed, in the line's currency.", true, obj(vec!["report_id", "line_id", "amount_cents", "reason"], json!({
                "report_id": report.clone(), "line_id": line.clone(), "amount_cents": {"type": "integer", "minimum": 1, "maximum": 100_000_000}, "reason": reason.clone(),
            }))),
            spec("reject_expense_line", "Reject one expense line (not reimbursed).", true, obj(vec!["report_id", "line_id", "reason"], json!({"report_id": report.clone(), "line_id": line, "reason": reason}))),
            spec("approve_expense", "Approve a submitted expense report once it meets the policy (receipts, per-diems); sets the USD amount reimbursed. Never your own report.", true, obj(vec!["report_id"], json!({"report_id": report}))),
            spec("post_journal_entry", "Post a balanced journal entry (debits = credits, in USD cents) dated in an open period.", true, obj(vec!["date", "memo", "lines"], json!({
                "date": id("Entry date like 2026-03-31"), "memo": {"type": "string", "minLength": 3},
                "lines": {"type": "array", "minItems": 2, "maxItems": 50, "items": {"type": "object", "required": ["account_id"], "properties": {
                    "account_id": {"type": "string"}, "debit_cents": {"type": "integer", "minimum": 0}, "credit_cents": {"type": "integer", "minimum": 0}}}},
            }))),
            spec("get_account_balance", "An account's balance now (USD cents, debit-positive) from its opening balance and every posted entry.", false, obj(vec!["account_id"], json!({"account_id": id("Account number like 2000")}))),
            spec("list_accounts", "The chart of accounts and the accounting periods with their status.", false, obj(vec![], json!({}))),
            spec("search_kb", "Search the finance policies (AP policy, expense policy, approval matrix, close calendar) by keywords.", false, obj(vec!["query"], json!({"query": {"type": "string", "minLength": 1}}))),
            spec("read_kb_article", "Read one policy document in full.", false, obj(vec!["article_id"], json!({"article_id": id("The document's file name from search_kb, e.g. ap_policy.md")}))),
        ]
    }

    fn step(
        &mut self,
        ctx: &Ctx,
        tool: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, String> {
        // Rules read the state before they write it, so an error leaves it unchanged.
        self.step_inner(ctx, tool, &Params(params))
    }

    fn data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn human_readable(&self) -> String {
        let mut out = format!(
            "{} finance: {} vendors, {} POs, {} invoices, {} payments, {} expense reports, {} journal entries\n",
            self.company, self.vendors.len(), self.purchase_orders.len(), self.invoices.len(), self.payments.len(), self.expense_reports.len(), self.journal_entries.len()
        );
        for i in &self.invoices {
            out.push_str(&format!(
                "invoice {} {} {} {} {} due {}\n",
                i.invoice_id,
                i.vendor_id,
                i.invoice_number,
                money(i.amount_cents, &i.currency),
                i.status,
                i.due_date
            ));
        }
        for p in &self.payments {
            out.push_str(&format!(
                "payment {} {} {} {}\n",
                p.payment_id,
                p.invoice_id,
                p.run_id,
                money(p.amount_cents, &p.currency)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
