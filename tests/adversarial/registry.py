"""Rows whose attack an existing test elsewhere already makes exactly: pointers, as data.

Each names the existing tests by node id; ``make attack-report`` runs them with the
tests of tests/adversarial, and tests/adversarial/test_matrix_docs.py checks that every
id is still collected. A pointer is only here when the test asserts the exact refusal
and that nothing was released, written or left behind.
"""

from __future__ import annotations

from tests.adversarial.matrix import Row

V = "tests/test_verifier.py::"
AS = "tests/test_attested_sessions.py::"
KR = "tests/test_key_release.py::"
API = "tests/test_emulator_api.py::"
AUTH = "tests/test_emulator_auth.py::"
LIM = "tests/test_control_plane_limits.py::"
HB = "tests/test_heartbeat.py::"
AUD = "tests/test_audit.py::"
KA = "tests/keyagent/test_server.py::"
NT = "tests/dataset/test_native_tamper.py::"

NAMESPACE = "whoever controls the namespace (the pods' bearer token, pod specs)"
STORAGE = "storage account"
NETWORK = "network, compromised proxy"


def _row(area: str, id: str, threat: str, adversary: str, mechanism: str, *tests: str) -> Row:
    return Row(id, area, threat, adversary, mechanism, tests, new=False)


def _specs(*a: str) -> Row:
    return _row("specs", *a)


def _att(*a: str) -> Row:
    return _row("attestation", *a)


def _cp(*a: str) -> Row:
    return _row("control plane", *a)


def _kr(*a: str) -> Row:
    return _row("key release and agent", *a)


def _data(*a: str) -> Row:
    return _row("data", *a)


def _hb(*a: str) -> Row:
    return _row("heartbeats and orders", *a)


def _audit(*a: str) -> Row:
    return _row("audit log", *a)


def _job(*a: str) -> Row:
    return _row("job modules", *a)


POINTERS: tuple[Row, ...] = (
    # --- specs ---------------------------------------------------------------------------
    _specs(
        "spec-payload-tampered",
        "one byte of the signed spec's payload changed in transit",
        NETWORK,
        "DSSE signature by the pinned control-plane key over the exact payload; verify, then parse",
        V + "test_one_flipped_payload_byte_breaks_the_signature",
        V + "test_deeply_nested_spec_is_refused_before_parsing",
    ),
    _specs(
        "spec-signed-by-a-stranger",
        "a spec re-signed by a key the trust root does not name",
        NETWORK,
        "only keys of the pinned trust root's control-plane role count",
        V + "test_spec_signed_by_an_unknown_key_is_refused",
        V + "test_revoked_control_plane_key_is_refused",
        V + "test_expired_control_plane_key_is_refused",
    ),
    _specs(
        "trust-root-key-substituted",
        "a trust root whose public key was swapped under a trusted key id",
        "whoever writes the pod's files",
        "key ids are recomputed as the SHA-256 of each key's SubjectPublicKeyInfo",
        "tests/test_spec_and_signing.py::test_trust_root_recomputes_key_ids",
    ),
    _specs(
        "spec-of-another-run",
        "another run's genuine signed spec served for this run",
        NETWORK,
        "the spec's run id must be the run the pod was started for",
        V + "test_spec_for_another_run_is_refused",
    ),
    _specs(
        "approval-forged-or-duplicated",
        "an approval by a stranger's key, or one owner's approval repeated to meet a threshold",
        NETWORK,
        "approvals verify under the owner's keys; thresholds count distinct keys",
        V + "test_forged_approval_does_not_count",
        V + "test_duplicate_approver_counts_once",
        API + "test_approval_for_another_spec_digest_is_refused",
        API + "test_approval_for_another_run_is_refused",
    ),
    _specs(
        "approval-of-an-older-digest",
        "an approval signed before the workload changed counted for the new spec",
        "the submitter or renderer",
        "an approval counts only for the exact digest it signs",
        AS + "test_an_approval_of_an_older_digest_counts_for_nothing",
    ),
    _specs(
        "claimed-run-replayed",
        "a run that was already claimed verified and claimed again (a second driver)",
        NAMESPACE,
        "one-time claim, compare-and-set from approved",
        V + "test_replayed_claim_is_refused",
        API + "test_second_claim_with_another_id_is_replayed",
        AS + "test_a_finished_run_cannot_be_approved_claimed_or_keyed_again",
    ),
    _specs(
        "claim-receipt-forged",
        "a claim receipt signed by another key handed to the verifier",
        NETWORK,
        "the receipt is a DSSE envelope verified under the control-plane role",
        V + "test_forged_claim_receipt_is_refused",
    ),
    _specs(
        "module-or-image-swapped",
        "the pod runs another job module or image than the spec pins",
        NAMESPACE,
        "the verifier checks the module's SHA-256 and the image digest against the spec",
        V + "test_swapped_module_file_is_refused",
        V + "test_wrong_image_digest_is_refused",
    ),
    # --- attestation -----------------------------------------------------------------------
    _att(
        "evidence-bit-flipped",
        "one byte of a genuine report changed",
        "cloud host, network",
        "the report's signature under the VCEK",
        KR + "test_bit_flipped_report_is_refused_at_attest",
    ),
    _att(
        "evidence-from-a-foreign-chip",
        "a report from a chip whose VCEK chains to another (emulated) root",
        "anyone outside the TEE",
        "VCEK -> ASK -> ARK to the pinned roots; emulated roots only where enabled",
        KR + "test_vcek_from_an_unknown_emulated_chain_is_refused",
        KR + "test_emulated_evidence_under_a_production_policy_is_refused",
    ),
    _att(
        "tcb-below-the-keys-minimum",
        "a genuine report from a platform whose TCB is below what the key requires",
        "cloud host (old firmware)",
        "the key's release policy sets a minimum TCB, checked at each release",
        KR + "test_tcb_below_the_keys_minimum_is_refused_at_release",
    ),
    _att(
        "debug-guest",
        "a guest launched with debugging allowed (its memory readable by the host)",
        "cloud host (sets the guest policy)",
        "no-debug in every purpose's policy",
        KR + "test_debug_guest_policy_is_refused_at_attest",
        V + "test_debug_guest_evidence_is_refused_at_step_9",
    ),
    _att(
        "vmpl-not-allowed",
        "a report from VMPL 3 (a less privileged level the host can shape)",
        "cloud host, paravisor",
        "allowed VMPLs in the release policy",
        AS + "test_a_vmpl3_report_opens_no_session_and_gets_no_key",
        V + "test_vmpl3_evidence_is_refused_and_claims_nothing",
    ),
    _att(
        "smt-socket-chip-rules",
        "SMT on, several sockets, or another chip than the key allows",
        "cloud host",
        "composable release-policy checks; an empty policy refuses",
        AS + "test_release_policy_rules",
        AS + "test_empty_policies_refuse",
    ),
    _att(
        "evidence-replayed",
        "a genuine attest request sent again, or with an invented or another run's nonce",
        NETWORK,
        "single-use, per-run, expiring nonces bound in REPORT_DATA",
        KR + "test_reused_invented_and_foreign_nonces_are_refused",
    ),
    _att(
        "evidence-not-binding-the-request",
        "evidence whose REPORT_DATA binds another spec digest or ephemeral key than the request",
        NAMESPACE,
        "the KMS recomputes REPORT_DATA from the run's recorded spec digest and the request",
        AS + "test_evidence_that_does_not_bind_the_spec_digest_opens_no_session",
        KR + "test_evidence_bound_to_another_ephemeral_key_is_refused",
        KR + "test_report_data_not_binding_the_request_is_refused",
    ),
    _att(
        "host-data-of-another-role",
        "the executor pod's HOST_DATA presented as the driver's, or a made-up one",
        NAMESPACE,
        "HOST_DATA checked per role against the signed spec",
        AS + "test_host_data_must_be_the_specs_for_the_pods_role",
    ),
    # --- control plane ---------------------------------------------------------------------
    _cp(
        "claim-race",
        "several drivers claim one run at once",
        NAMESPACE,
        "the claim is a compare-and-set: one winner",
        API + "test_concurrent_claims_have_one_winner",
    ),
    _cp(
        "approval-races",
        "a workload swap or a cancel racing the last approval",
        "the submitter, an operator",
        "approvals counted on a fresh read inside the transaction that records them",
        AS + "test_an_approval_races_a_workload_swap_and_the_swap_never_wins_silently",
        AS + "test_an_approval_racing_a_cancel_never_undoes_it",
        AS + "test_keys_need_the_approvals_of_the_runs_current_digest_whatever_its_state",
    ),
    _cp(
        "oversized-bodies",
        "huge or deeply nested request bodies, nonce floods",
        "anyone who can reach the API",
        "a per-route body limit by declared length and as it streams, before parsing",
        AS + "test_huge_and_malformed_bodies_are_refused_before_parsing",
        LIM + "test_each_route_has_its_body_limit",
        LIM + "test_a_body_is_not_read_before_the_token_is_known",
        AS + "test_a_run_has_a_bounded_number_of_open_nonces",
    ),
    _cp(
        "malformed-bodies",
        "JSON read one way when checked and another when signed: duplicate keys, NaN, "
        "huge integers, not JSON",
        "anyone who can reach the API",
        "refused at the gate and in every signed document's parser",
        LIM + "test_duplicate_keys_are_refused_before_any_route_reads_them",
        LIM + "test_nan_and_infinity_are_refused_not_a_500",
        LIM + "test_integers_beyond_ijson_are_refused_not_a_500",
        API + "test_body_that_is_not_json_is_422",
    ),
    _cp(
        "role-confusion",
        "a principal calls a route of another role (a pod approves, an owner claims)",
        NAMESPACE,
        "each route allows named roles; the token only says who calls",
        AUTH + "test_role_not_allowed_is_403_auth_forbidden",
        KR + "test_pods_cannot_create_keys",
    ),
    _cp(
        "organisation-confusion-approvals",
        "an owner approves for another organisation, or a run that does not name it",
        "an owner of another organisation",
        "the approval's signing keys name its owner; the caller must be that owner",
        AUTH + "test_owner_approving_for_another_org_is_403",
        AUTH + "test_owner_of_an_org_not_in_the_run_cannot_approve",
    ),
    _cp(
        "claim-with-the-token-alone",
        "a claim with the pods' bearer token and no attested session",
        NAMESPACE,
        "the claim needs a live verifier session of a driver pod of that run",
        AS + "test_a_claim_without_evidence_claims_nothing",
        AS + "test_a_claim_with_another_runs_session_is_refused",
    ),
    _cp(
        "output-uri-squatted",
        "a run approved to write at another organisation's dataset URI",
        "an owner of another organisation",
        "a URI belongs to the organisation that first declared it",
        "tests/test_dataset_identity.py::"
        "test_a_run_cannot_be_approved_to_write_at_another_organisations_uri",
        "tests/test_dataset_identity.py::test_a_uri_belongs_to_the_organisation_that_first_published_there",
    ),
    # --- key release and the agent ----------------------------------------------------------
    _kr(
        "dataset-outside-the-spec-at-the-kms",
        "a key-agent session asks the KMS for a dataset its run's spec does not name",
        "an approved job module, a compromised pod",
        "the KMS releases only datasets of the signed spec",
        KR + "test_dataset_outside_the_spec_is_refused",
        KR + "test_key_of_an_org_that_did_not_approve_is_not_released",
    ),
    _kr(
        "dataset-outside-the-spec-at-the-agent",
        "a local reader asks the agent for a dataset, or a key id, the spec does not grant",
        "an approved job module (can reach the socket)",
        "the agent's grants come from the re-verified spec; key ids are pinned",
        KA + "test_dataset_outside_the_spec_is_refused_without_calling_the_source",
        KA + "test_a_key_id_other_than_the_specs_is_refused",
        KA + "test_inputs_may_be_read_but_not_written",
    ),
    _kr(
        "wrong-session-purpose-or-state",
        "a verifier or heartbeat session asks for a key; a key asked after the run was cancelled",
        "a compromised sidecar",
        "keys only to key-agent sessions of a running run",
        AS + "test_a_verifier_or_heartbeat_session_gets_no_key",
        KR + "test_run_cancelled_after_attestation_is_refused_at_release",
    ),
    _kr(
        "agent-peer-of-another-uid",
        "a process of another uid connects to the agent, or impersonates it to a reader",
        "another container or user on the node",
        "SO_PEERCRED checked by both ends",
        "tests/keyagent/test_peer.py::test_peer_with_another_uid_is_refused",
        KA + "test_client_refuses_an_agent_of_another_uid",
    ),
    _kr(
        "agent-master-key-request",
        "a master (or MAC) key asked from the agent by name or by any operation",
        "an approved job module (can reach the socket)",
        "no operation returns a master key; get_key is an unknown op",
        KA + "test_get_key_is_gone_and_returns_no_key",
        KA + "test_no_answer_of_any_op_holds_the_master_key_or_the_mac_key",
    ),
    _kr(
        "agent-on-a-disk-directory",
        "the agent's socket directory on a disk filesystem the host can image",
        "whoever writes the pod spec (volumes)",
        "the socket's directory must be tmpfs or ramfs",
        "tests/keyagent/test_memfs.py::test_disk_directory_is_refused",
    ),
    _kr(
        "spark-secret-planted-file",
        "a symlink or foreign file planted where the agent writes Spark's secret, or a "
        "directory others can enter",
        "whoever writes the pod's volumes",
        "O_EXCL|O_NOFOLLOW, 0400, a 0700 directory of the agent's uid",
        "tests/test_spark_secret.py::test_a_planted_symlink_or_foreign_file_is_refused_and_untouched",
        "tests/test_spark_secret.py::test_a_directory_others_can_enter_is_refused",
    ),
    # --- data --------------------------------------------------------------------------------
    _data(
        "native-bit-flip",
        "one bit of a stored part flipped (Spark's native Parquet path)",
        STORAGE,
        "size and footer digest of each file checked in the JVM before decoding; every "
        "other byte in an AES-GCM module under the key and AAD the footer pins",
        NT + "test_bit_flip_in_a_file_is_refused",
        NT + "test_a_byte_altered_at_either_end_is_refused_before_decoding",
    ),
    _data(
        "native-row-group-replayed",
        "a row group's genuine ciphertext copied over another of the same part, native path",
        STORAGE,
        "PME's module AAD names the file, row group, column and page",
        NT + "test_a_row_group_copied_over_another_is_refused",
    ),
    _data(
        "native-part-rolled-back",
        "a part replaced by the previous version's (same size, same key), native path",
        STORAGE,
        "footer digests of the recorded manifest, checked in the JVM (whole-file digests "
        "for schema-1 manifests)",
        NT + "test_a_part_rolled_back_to_the_previous_version_is_refused",
        NT + "test_a_schema_1_dataset_is_read_on_both_paths_and_checked_whole",
    ),
    _data(
        "native-parts-reordered",
        "parts moved within a version, native path",
        STORAGE,
        "each file's digest under its own path",
        NT + "test_parts_moved_within_a_version_are_refused",
    ),
    _data(
        "native-part-swapped-after-check",
        "a part swapped after the driver checked it and before Spark decodes it",
        STORAGE,
        "every open is served the verified footer region (VerifiedLocalFileSystem), so the "
        "swapped part's pages fail authentication under the verified key and AAD",
        NT + "test_a_part_swapped_after_it_was_verified_is_refused",
        NT + "test_a_part_of_another_dataset_under_the_same_size_is_refused",
    ),
    _data(
        "native-algorithm-switched-after-check",
        "a verified part switched to AES_GCM_CTR_V1 (unauthenticated pages) under the same "
        "key metadata, with a page re-laid to decrypt to a chosen value (found in review)",
        STORAGE,
        "every open is served the verified crypto metadata and footer, so Parquet keeps "
        "AES_GCM_V1; a fresh JVM refuses the file before decoding",
        NT + "test_crypto_metadata_changed_after_the_check_is_never_decoded",
    ),
    _data(
        "native-length-raced",
        "a verified part's length raced (short for the stat Parquet takes it from, right "
        "for the open's check) so that Parquet reads a footer planted earlier in the file "
        "(found in review)",
        STORAGE,
        "the read's file system reports the manifest's size for every stat and listing; "
        "only the check reads storage's, and the open requires exactly that size",
        NT + "test_every_stat_reports_the_manifests_size_not_storages",
    ),
    _data(
        "native-length-prefix-altered",
        "a module's length prefix (outside the digest and GCM) altered, native path "
        "(found in review)",
        STORAGE,
        "the module then fails to decode; a failed read of a verified part is dataset.file_corrupt",
        NT + "test_a_page_header_length_prefix_altered_is_refused",
    ),
    _data(
        "native-manifest-checks",
        "manifest rolled back, dropped or altered, native path; a session told to skip "
        "corrupt files",
        STORAGE,
        "the driver's manifest checks before Spark runs; ignoreCorruptFiles off for the read",
        NT + "test_the_drivers_checks_refuse_before_spark_reads",
        NT + "test_spark_skipping_corrupt_files_does_not_skip_a_refused_one",
    ),
    _data(
        "staged-part-altered",
        "a part altered in staging between its task and the commit",
        STORAGE,
        "the commit checks each staged part against its task's size and footer digest; a "
        "page altered in staging is published but fails authentication on every read",
        "tests/dataset/test_versions.py::test_a_part_altered_in_staging_is_not_published",
        "tests/dataset/test_versions.py::test_a_page_altered_in_staging_is_published_but_never_read",
    ),
    _data(
        "owner-decrypt-rolled-back",
        "an older manifest served to the owner's decrypt command",
        STORAGE,
        "the control plane's recorded version; nothing is written on refusal",
        "tests/dataset/test_with_kms.py::test_control_plane_refuses_a_rolled_back_dataset",
    ),
    # --- heartbeats and orders -----------------------------------------------------------
    _hb(
        "heartbeat-forged",
        "a heartbeat not signed by the key the heartbeat sidecar's evidence bound",
        NAMESPACE,
        "each heartbeat is a JWS by the session's attested ephemeral key",
        HB + "test_a_heartbeat_not_signed_by_the_attested_key_is_refused",
        HB + "test_the_bearer_token_alone_cannot_end_a_run",
    ),
    _hb(
        "heartbeat-replayed",
        "an earlier heartbeat sent again (to fake liveness or repeat an outcome)",
        NETWORK,
        "strictly increasing sequence numbers per session",
        HB + "test_a_replayed_heartbeat_is_refused",
        HB + "test_heartbeats_for_a_finished_run_are_refused",
    ),
    _hb(
        "heartbeat-out-of-window",
        "a heartbeat dated in the future or long past, or a sequence number near 2^53",
        NETWORK,
        "the heartbeat's time must be within the clock window; bounded sequence numbers",
        LIM + "test_a_heartbeat_from_the_future_or_too_old_is_refused",
    ),
    _hb(
        "heartbeat-from-another-pod",
        "a pod that did not claim the run, or its key-agent session, speaks for the run",
        NAMESPACE,
        "heartbeat sessions only for the claiming driver pod",
        HB + "test_only_the_claiming_pods_heartbeat_session_speaks_for_the_run",
    ),
    _hb(
        "outcome-with-made-up-outputs",
        "a final success naming output versions the run never published",
        "a compromised pod",
        "a success must name exactly the versions the control plane recorded for this run",
        HB + "test_a_final_success_names_the_recorded_output_versions",
        AS + "test_a_success_naming_a_version_another_party_published_ends_failed",
    ),
    _hb(
        "cancel-injected",
        "an unsigned 'cancel' in a heartbeat answer, or a forged order on the pod volume",
        "network, Service Bus writer, whoever writes the pod volume",
        "the sidecar and the driver obey only a verified CancelOrder for their run",
        HB + "test_an_unsigned_cancel_from_the_network_stops_nothing",
        "tests/test_orders.py::test_cancel_orders_verify_only_for_their_run_and_signer",
        "tests/test_orders.py::test_the_driver_obeys_only_a_verified_order_handed_over_the_pod_volume",
    ),
    # --- the audit log -------------------------------------------------------------------
    _audit(
        "audit-truncated",
        "entries dropped from the end of an exported or served log",
        "operator of the control plane's storage, whoever hands over the export",
        "every answer carries a signed checkpoint {count, head, time}",
        AUD + "test_entries_dropped_from_the_end_of_an_export_are_caught",
    ),
    _audit(
        "audit-reordered",
        "entries reordered, removed from the middle, or renumbered",
        "operator of the control plane's storage",
        "dense sequence numbers and hash links, each entry signed",
        AUD + "test_reordered_entries",
        AUD + "test_removed_middle_entry",
        AUD + "test_renumbered_after_removal",
    ),
    _audit(
        "audit-edited",
        "an entry's details changed, with its hash recomputed or re-signed by another key",
        "operator of the control plane's storage",
        "each entry signed by the control plane over its body and link",
        AUD + "test_changed_details_with_recomputed_hash",
        AUD + "test_resealed_by_another_key",
    ),
    _audit(
        "audit-rolled-back-live",
        "the live database rolled back (entries deleted) before a restart",
        "operator of the control plane's storage",
        "audit verify against a checkpoint saved earlier",
        AUD + "test_a_rolled_back_live_log_fails_against_a_saved_checkpoint",
    ),
    _audit(
        "audit-flooded",
        "unauthenticated requests grow the signed log without bound",
        "anyone who can reach the API",
        "unauthenticated refusals are counted and summarised once per interval",
        AUTH + "test_unauthenticated_refusals_are_summarised",
    ),
    # --- job modules ---------------------------------------------------------------------
    _job(
        "job-log-escape-hatch",
        "a job logs values through a field it did not declare or a reveal option",
        "an approved job module",
        "allow-listed field names, declared with the module; no escape hatch",
        "tests/test_job_log.py::test_unknown_fields_are_dropped_and_only_counted",
        "tests/test_job_log.py::test_there_is_no_reveal_escape_hatch",
    ),
)
