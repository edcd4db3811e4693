// Schema rules shared by the envelope and result codecs: the sender's
// preflight and the receiver's decoder run the same functions, so the two
// sides of the boundary check exactly the same thing.
#pragma once

#include <span>
#include <string_view>

#include "lockstep/envelope.h"
#include "lockstep/result.h"

namespace lockstep::wire_detail {

// The envelope schema of envelope.h; `manifest` is canonical.
void check_envelope_schema(const Envelope& envelope, std::span<const TensorSpec> manifest);

// The result schema of result.h for protocol `version`.
void check_result_schema(const Result& result, std::span<const TensorSpec> manifest, ProtocolVersion version);

// Throws Error{kSchema} naming `tensor_key`[0] unless present with shape
// [rows, geometry.dim], where rows == rows_exact, or (rows_exact == 0) a
// positive multiple of geometry.tokens_per_frame.
void check_token_tensor(std::span<const TensorSpec> manifest, std::string_view tensor_key, const Geometry& geometry,
                        std::uint64_t rows_exact);

// Geometry must be all non-zero for INFER and all zero otherwise.
void check_geometry(Action action, const Geometry& geometry, std::string_view message);

// Reason required (non-empty, valid text) for ERROR, forbidden otherwise.
void check_error_reason(Action action, std::string_view reason, std::string_view message);

}  // namespace lockstep::wire_detail
