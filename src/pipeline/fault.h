// Fault-injection points for the crash tests: with CERTCUSTODY_FAULT_POINTS
// compiled in (a test build option, off by default), the process kills itself
// with SIGKILL when it reaches the point named by $CERTCUSTODY_FAULT_POINT —
// the same as a power cut or the OOM killer at that line.
#pragma once

namespace certcustody::pipeline {

// The points, in pipeline order (docs/pipeline.md lists what each one proves).
inline constexpr const char* kFaultPoints[] = {
    "after_intake",    // request recorded, spool file not yet removed
    "after_claim",     // request claimed (processing), nothing done yet
    "after_csr",       // user key sealed and CSR persisted, not yet submitted
    "before_submit",   // submission marked in the store, not yet sent
    "after_submit",    // the CA answered, the answer not yet persisted
    "after_issue",     // certificate persisted, its ca.result not yet recorded
    "after_bundle",    // PFX sealed at rest, not yet written out
    "after_write",     // enveloped PFX written, state not yet delivered
    "after_delivered", // state delivered, the status record not yet written
    "spool_tmp_written",  // a spool file complete under its temporary name, not yet renamed
};

void fault_point(const char* name);

}  // namespace certcustody::pipeline
