// Control frames (MessageKind::kControl): the version handshake (SPEC §4A
// "Versioning", A4), the leader's ERROR broadcast to the mesh (B6), and the
// leader's request for an envelope's payload (PAYLOAD_READY).
//
// HELLO is always encoded and decoded as kHandshakeProtocolVersion, so ranks
// of different builds can read each other's supported ranges before any
// version has been agreed. ERROR uses the negotiated version.
//
// Body: u8 ControlKind, u16 versions.min, u16 versions.max, u32 reason
// bytes, reason. Schema (kSchema naming the field): HELLO requires 1 <= min
// <= max and forbids a reason; ERROR requires a reason (UTF-8, non-empty,
// <= kStringBytesMax, kEncode otherwise) and zero versions; PAYLOAD_READY
// forbids both and requires a non-zero call_id.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "lockstep/envelope.h"
#include "lockstep/frame.h"
#include "lockstep/prepared.h"
#include "lockstep/protocol_version.h"

namespace lockstep {

enum class ControlKind : std::uint8_t {
  kHello = 1,         // header action NOOP
  kError = 2,         // header action ERROR
  // The leader has validated envelope `ids` and waits in recv for its
  // payload (header action INFER). Payloads are pulled, never pushed:
  // Gloo's p2p send is a rendezvous, so a Stage 0 pushing an envelope
  // payload while the leader pushes a result payload would block both.
  kPayloadReady = 3,
};

struct Control {
  ControlKind kind = ControlKind::kHello;
  CallIds ids;              // ERROR: the call it aborts; HELLO: zero
  VersionRange versions{0, 0};  // HELLO only
  std::string reason;       // ERROR only
  bool operator==(const Control&) const = default;
};

// Control::kHello carrying supported_protocol_versions().
Control hello_control();

// Checks and encodes (context.version is ignored for HELLO). Throws
// Error{kSchema|kEncode|kVersion}. Pure; any thread.
PreparedControl preflight_control(const Control& control, const FrameContext& context);

struct DecodedControl {
  FrameHeader header;
  Control control;
};

// Like decode_envelope(), for kind == control; a HELLO must carry version
// kHandshakeProtocolVersion whatever expect.version says. Pure; any thread.
DecodedControl decode_control(std::span<const std::uint8_t> frame, const FrameExpectations& expect);

}  // namespace lockstep
