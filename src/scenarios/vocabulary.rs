//! The names of the tool servers and their tools: the protocol surface a task may
//! refer to. `tools` implements exactly these (a test there keeps the two in step);
//! it lives here so that validating a task does not need the tool implementations.

/// The servers that serve the scenario's seed documents to the agent.
pub const DOCUMENT_SERVERS: &[&str] = &["hrms", "ticketing", "commerce", "finance"];

/// Every tool server and its tools.
pub const KNOWN_TOOL_SERVERS: &[(&str, &[&str])] = &[
    (
        "calendar",
        &[
            "list_events",
            "get_event",
            "create_event",
            "update_event",
            "cancel_event",
            "check_availability",
            "find_free_slots",
        ],
    ),
    (
        "commerce",
        &[
            "search_customers",
            "get_customer",
            "list_orders",
            "get_order",
            "track_shipment",
            "search_products",
            "cancel_order",
            "update_shipping_address",
            "issue_refund",
            "create_return",
            "create_replacement_order",
            "issue_store_credit",
            "apply_coupon",
            "add_order_note",
            "search_kb",
            "read_kb_article",
        ],
    ),
    (
        "email",
        &[
            "list_inbox",
            "search_emails",
            "read_email",
            "send_email",
            "reply_to_email",
            "mark_read",
            "list_sent",
            "archive_email",
        ],
    ),
    (
        "finance",
        &[
            "search_vendors",
            "get_vendor",
            "update_vendor_bank",
            "list_purchase_orders",
            "get_purchase_order",
            "list_invoices",
            "get_invoice",
            "match_invoice",
            "approve_invoice",
            "reject_invoice",
            "hold_invoice",
            "list_payment_runs",
            "schedule_payment",
            "list_expense_reports",
            "get_expense_report",
            "add_expense_receipt",
            "reduce_expense_line",
            "reject_expense_line",
            "approve_expense",
            "post_journal_entry",
            "get_account_balance",
            "list_accounts",
            "search_kb",
            "read_kb_article",
        ],
    ),
    (
        "hrms",
        &[
            "search_employees",
            "get_employee",
            "get_direct_reports",
            "get_manager_chain",
            "get_leave_balance",
            "list_leave_requests",
            "submit_leave_request",
            "approve_leave_request",
            "reject_leave_request",
            "list_requisitions",
            "get_requisition",
            "list_candidates",
            "get_candidate",
            "move_candidate_stage",
            "add_candidate_note",
            "get_onboarding_checklist",
            "create_onboarding_checklist",
            "complete_onboarding_item",
            "list_documents",
            "read_document",
        ],
    ),
    (
        "ticketing",
        &[
            "list_tickets",
            "get_ticket",
            "create_ticket",
            "update_ticket",
            "add_comment",
            "link_tickets",
            "merge_tickets",
            "search_users",
            "get_user",
            "list_groups",
            "list_assets",
            "get_asset",
            "assign_asset",
            "return_asset",
            "list_licenses",
            "grant_license",
            "revoke_license",
            "reset_password",
            "search_kb",
            "read_kb_article",
        ],
    ),
];

/// The tools of one server, or `None` for an unknown server.
pub fn server_tools(server: &str) -> Option<&'static [&'static str]> {
    KNOWN_TOOL_SERVERS
        .iter()
        .find(|(s, _)| *s == server)
        .map(|(_, t)| *t)
}

/// Whether `tool` is a tool of any of `servers`.
pub fn known_tool(servers: &[String], tool: &str) -> bool {
    servers
        .iter()
        .any(|s| server_tools(s).is_some_and(|t| t.contains(&tool)))
}

pub(crate) fn server_names() -> Vec<&'static str> {
    KNOWN_TOOL_SERVERS.iter().map(|(s, _)| *s).collect()
}
