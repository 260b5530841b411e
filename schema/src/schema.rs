// @generated in the form of `diesel print-schema` for the MySQL migrations; the
// `schema_rs_matches_the_migrated_database` test fails when it drifts from them.

diesel::table! {
    cluster (id) {
        id -> BigInt,
        #[max_length = 64]
        name -> Varchar,
        #[max_length = 64]
        region -> Varchar,
        #[max_length = 64]
        mesh_name -> Varchar,
        #[max_length = 64]
        role -> Varchar,
        deleted_flag -> BigInt,
        deleted_at -> Nullable<Timestamp>,
        created_at -> Nullable<Timestamp>,
        updated_at -> Nullable<Timestamp>,
        #[max_length = 32]
        phase -> Varchar,
        linked_at -> Nullable<Timestamp>,
        #[max_length = 2048]
        error -> Varchar,
        #[max_length = 64]
        network -> Varchar,
    }
}

diesel::table! {
    command_log (command_id) {
        #[max_length = 36]
        command_id -> Varchar,
        #[max_length = 255]
        tenant_id -> Varchar,
        #[max_length = 64]
        mesh_name -> Varchar,
        #[max_length = 64]
        kind -> Varchar,
        #[max_length = 32]
        status -> Varchar,
        result -> Nullable<Text>,
        flow_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    flow (id) {
        id -> BigInt,
        #[max_length = 255]
        tenant_id -> Varchar,
        #[max_length = 255]
        mesh_name -> Varchar,
        #[max_length = 255]
        name -> Varchar,
        #[max_length = 255]
        def_name -> Varchar,
        #[max_length = 255]
        status -> Varchar,
        input -> Text,
        log -> Nullable<Text>,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        #[max_length = 255]
        processor -> Varchar,
        heartbeat -> Nullable<Timestamp>,
        created_at -> Nullable<Timestamp>,
        updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    lb_resource (id) {
        id -> BigInt,
        #[max_length = 64]
        name -> Varchar,
        #[max_length = 32]
        mesh_name -> Varchar,
        #[max_length = 32]
        status -> Varchar,
    }
}

diesel::table! {
    mesh (id) {
        id -> BigInt,
        #[max_length = 255]
        tenant_id -> Varchar,
        #[max_length = 64]
        name -> Varchar,
        #[max_length = 64]
        region -> Varchar,
        #[max_length = 255]
        title -> Varchar,
        #[max_length = 255]
        status -> Varchar,
        #[max_length = 64]
        version -> Varchar,
        #[max_length = 64]
        last_version -> Varchar,
        config -> Nullable<Text>,
        deleted_flag -> BigInt,
        deleted_at -> Nullable<Timestamp>,
        created_at -> Nullable<Timestamp>,
        updated_at -> Nullable<Timestamp>,
        state -> Nullable<Text>,
        #[max_length = 32]
        mode -> Varchar,
        tasks -> Nullable<Text>,
        generation -> BigInt,
        owner_epoch -> BigInt,
    }
}

diesel::table! {
    mesh_event_log (id) {
        id -> BigInt,
        #[max_length = 36]
        event_id -> Varchar,
        #[max_length = 255]
        tenant_id -> Varchar,
        #[max_length = 64]
        mesh_name -> Varchar,
        #[max_length = 64]
        kind -> Varchar,
        #[max_length = 36]
        correlation_id -> Nullable<Varchar>,
        flow_id -> Nullable<BigInt>,
        payload -> Text,
        occurred_at -> Timestamp,
        epoch -> Nullable<BigInt>,
    }
}

diesel::table! {
    mesh_events (id) {
        id -> BigInt,
        #[max_length = 64]
        name -> Varchar,
        events -> Nullable<Text>,
    }
}

diesel::table! {
    mesh_secret (id) {
        id -> BigInt,
        #[max_length = 64]
        mesh_name -> Varchar,
        #[max_length = 255]
        name -> Varchar,
        sealed -> Text,
        #[max_length = 64]
        key_id -> Varchar,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    registered_cluster (id) {
        id -> BigInt,
        #[max_length = 255]
        tenant_id -> Varchar,
        #[max_length = 64]
        name -> Varchar,
        #[max_length = 64]
        region -> Varchar,
        #[max_length = 1024]
        server -> Varchar,
        #[max_length = 32]
        auth_kind -> Varchar,
        credentials_sealed -> Text,
        #[max_length = 64]
        key_id -> Varchar,
        #[max_length = 32]
        status -> Varchar,
        #[max_length = 2048]
        status_message -> Varchar,
        deleted_flag -> BigInt,
        deleted_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    task (id) {
        id -> BigInt,
        flow_id -> BigInt,
        #[max_length = 255]
        name -> Varchar,
        #[max_length = 255]
        status -> Varchar,
        output -> Nullable<Text>,
        error -> Nullable<Text>,
        #[max_length = 2048]
        steps -> Varchar,
        log -> Nullable<Text>,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        created_at -> Nullable<Timestamp>,
        updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    api_token (id) {
        id -> BigInt,
        #[max_length = 64]
        token_hash -> Varchar,
        #[max_length = 255]
        principal -> Varchar,
        #[max_length = 255]
        tenant_id -> Varchar,
        #[max_length = 16]
        role -> Varchar,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    api_token,
    cluster,
    command_log,
    flow,
    lb_resource,
    mesh,
    mesh_event_log,
    mesh_events,
    mesh_secret,
    registered_cluster,
    task,
);
