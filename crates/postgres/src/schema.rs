// @generated-equivalent: kept in sync with migrations/ by the `schema_matches_the_migrations` test.

diesel::table! {
    idempotency_keys (user_id, key) {
        user_id -> Uuid,
        key -> Text,
        operation -> Text,
        fingerprint -> Text,
        resource_id -> Nullable<Uuid>,
        response -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    invoices (id) {
        id -> Uuid,
        user_id -> Uuid,
        subscription_id -> Uuid,
        kind -> Text,
        lines -> Jsonb,
        total_minor -> Int8,
        currency -> Text,
        period_start -> Timestamptz,
        period_end -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    job_ticks (name, tick) {
        name -> Text,
        tick -> Timestamptz,
        claimed_at -> Timestamptz,
    }
}

diesel::table! {
    jobs (id) {
        id -> Uuid,
        kind -> Text,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        trace_parent -> Nullable<Text>,
        run_after -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        trace_state -> Nullable<Text>,
    }
}

diesel::table! {
    order_items (order_id, position) {
        order_id -> Uuid,
        position -> Int2,
        product_id -> Uuid,
        sku -> Text,
        name -> Text,
        unit_price_minor -> Int8,
        quantity -> Int4,
        line_total_minor -> Int8,
    }
}

diesel::table! {
    orders (id) {
        id -> Uuid,
        user_id -> Uuid,
        status -> Text,
        currency -> Text,
        total_minor -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    plans (code) {
        code -> Text,
        name -> Text,
        price_minor -> Int8,
        currency -> Text,
        interval -> Text,
        active -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    products (id) {
        id -> Uuid,
        sku -> Text,
        name -> Text,
        description -> Text,
        price_minor -> Int8,
        currency -> Text,
        stock -> Int4,
        active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        family_id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    reports (id) {
        id -> Uuid,
        kind -> Text,
        status -> Text,
        range_from -> Timestamptz,
        range_to -> Timestamptz,
        requested_by -> Uuid,
        job_id -> Nullable<Uuid>,
        result -> Nullable<Jsonb>,
        error -> Nullable<Text>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Uuid,
        user_id -> Uuid,
        plan_code -> Text,
        status -> Text,
        anchor -> Timestamptz,
        current_period_start -> Timestamptz,
        current_period_end -> Timestamptz,
        cancel_at_period_end -> Bool,
        cancelled_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        renewal_quarantined_at -> Nullable<Timestamptz>,
        renewal_error -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Text,
        role -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(idempotency_keys -> users (user_id));
diesel::joinable!(invoices -> subscriptions (subscription_id));
diesel::joinable!(invoices -> users (user_id));
diesel::joinable!(order_items -> orders (order_id));
diesel::joinable!(order_items -> products (product_id));
diesel::joinable!(orders -> users (user_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(reports -> jobs (job_id));
diesel::joinable!(reports -> users (requested_by));
diesel::joinable!(subscriptions -> plans (plan_code));
diesel::joinable!(subscriptions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    idempotency_keys,
    invoices,
    job_ticks,
    jobs,
    order_items,
    orders,
    plans,
    products,
    refresh_tokens,
    reports,
    subscriptions,
    users,
);
