// Protocol versions and their negotiation (SPEC §4A "Versioning", break-it A4).
//
// Version 1: envelope, result and control frames as described in frame.h.
// Version 2: the result additionally carries `kv_frames` (frames held by the
//            KV cache after the chunk), so Stage 0 can check the mesh's cache
//            fill against its own plan. Envelopes are identical in 1 and 2.
//
// At the handshake each rank announces the range it supports (a control
// HELLO frame, always encoded as version kHandshakeProtocolVersion so any two
// builds can read each other's); the job runs the highest version every rank
// supports, or refuses to start with a per-rank table.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace lockstep {

using ProtocolVersion = std::uint16_t;

inline constexpr ProtocolVersion kProtocolVersionMin = 1;  // oldest this build speaks
inline constexpr ProtocolVersion kProtocolVersionMax = 2;  // newest this build speaks
// The header layout and the HELLO body are frozen at this version forever.
inline constexpr ProtocolVersion kHandshakeProtocolVersion = 1;
// First version whose result carries kv_frames.
inline constexpr ProtocolVersion kProtocolVersionResultKvFrames = 2;

struct VersionRange {
  ProtocolVersion min = kProtocolVersionMin;
  ProtocolVersion max = kProtocolVersionMax;
  bool contains(ProtocolVersion v) const noexcept { return v >= min && v <= max; }
  bool operator==(const VersionRange&) const = default;
};

// The range this build supports: [kProtocolVersionMin, kProtocolVersionMax].
VersionRange supported_protocol_versions() noexcept;
bool protocol_version_supported(ProtocolVersion version) noexcept;

// Picks the highest version inside every rank's range (index = rank).
// Pure, non-blocking, any thread. Throws Error{kInvalidArgument} for an empty
// span or a range with min == 0 or min > max (naming the rank), and
// Error{kVersion} when no version is common, with a message holding one line
// per rank (min, max) that marks each rank lacking the version most ranks
// support, e.g. "rank 2: [3, 3]  <- lacks v2 (supported by 3 of 4 ranks)".
ProtocolVersion negotiate_protocol_version(std::span<const VersionRange> ranges_by_rank);

}  // namespace lockstep
