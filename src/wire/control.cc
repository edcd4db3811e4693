// Control frames. Body layout (after the header; ids and action in it):
//   u8 ControlKind, u16 versions.min, u16 versions.max,
//   u32 reason bytes, reason
#include "lockstep/control.h"

#include <string>

#include "lockstep/error.h"
#include "wire/envelope_schema.h"
#include "wire/frame_codec.h"

namespace lockstep {

namespace {

using wire_detail::Reader;
using wire_detail::Writer;

constexpr std::size_t kControlFixedBytes = 1 + 2 + 2;

Action header_action(ControlKind kind) {
  switch (kind) {
    case ControlKind::kHello: return Action::kNoop;
    case ControlKind::kError: return Action::kError;
    case ControlKind::kPayloadReady: return Action::kInfer;
  }
  return Action::kError;
}

[[noreturn]] void schema(const std::string& message) { throw Error(ErrorCode::kSchema, message); }

void check_control_schema(const Control& control) {
  if (control.kind == ControlKind::kHello) {
    if (control.versions.min == 0 || control.versions.min > control.versions.max) {
      schema("HELLO control versions [" + std::to_string(control.versions.min) + ", " +
             std::to_string(control.versions.max) + "] is not a range of protocol versions");
    }
    if (!control.reason.empty()) schema("HELLO control carries a reason; only ERROR may");
    return;
  }
  if (control.kind == ControlKind::kPayloadReady) {
    if (control.versions != VersionRange{0, 0}) schema("PAYLOAD_READY control carries versions; only HELLO may");
    if (!control.reason.empty()) schema("PAYLOAD_READY control carries a reason; only ERROR may");
    if (control.ids.call_id == 0) schema("PAYLOAD_READY control names call_id 0");
    return;
  }
  if (control.kind != ControlKind::kError) {
    schema("control kind " + std::to_string(static_cast<unsigned>(control.kind)) +
           " is not HELLO, ERROR or PAYLOAD_READY");
  }
  if (control.versions != VersionRange{0, 0}) schema("ERROR control carries versions; only HELLO may");
  wire_detail::check_error_reason(Action::kError, control.reason, "control");
}

}  // namespace

Control hello_control() {
  Control control;
  control.kind = ControlKind::kHello;
  control.versions = supported_protocol_versions();
  return control;
}

PreparedControl preflight_control(const Control& control, const FrameContext& context) {
  const ProtocolVersion version = control.kind == ControlKind::kHello ? kHandshakeProtocolVersion : context.version;
  wire_detail::check_context(version, context.sender_rank);
  check_control_schema(control);
  FrameHeader header =
      wire_detail::header_for(header_action(control.kind), version, context.sender_rank, context.job_token_digest);
  header.call_id = control.ids.call_id;
  header.chunk_index = control.ids.chunk_index;
  header.cache_epoch = control.ids.cache_epoch;
  const std::size_t body_bytes = kControlFixedBytes + wire_detail::reason_bytes(control.reason);
  return wire_detail::PreparedFactory::make<MessageKind::kControl>(header, body_bytes, wire_detail::ManifestBuild{},
                                                                   [&](Writer& out) {
                                                                     out.u8(static_cast<std::uint8_t>(control.kind));
                                                                     out.u16(control.versions.min);
                                                                     out.u16(control.versions.max);
                                                                     wire_detail::write_reason(out, control.reason);
                                                                   });
}

DecodedControl decode_control(std::span<const std::uint8_t> frame, const FrameExpectations& expect) {
  // A HELLO predates the negotiated version, so the header is opened with any
  // supported version and the version rule is applied per kind below.
  FrameExpectations any_version = expect;
  any_version.version = 0;
  DecodedControl decoded;
  decoded.header = wire_detail::open_frame(frame, any_version, MessageKind::kControl);
  const FrameHeader& header = decoded.header;
  wire_detail::check_no_meta(header);
  if (header.manifest_count != 0 || header.payload_bytes != 0 || header.plan_id != 0) {
    throw Error(ErrorCode::kSchema, "control frame header announces a plan or payload; control frames carry neither");
  }
  Reader in(frame.subspan(kHeaderBytes));
  Control& control = decoded.control;
  control.kind = static_cast<ControlKind>(in.u8("control kind"));
  control.versions.min = in.u16("versions.min");
  control.versions.max = in.u16("versions.max");
  control.reason = wire_detail::read_reason(in);
  wire_detail::check_body_consumed(in, header);
  control.ids = CallIds{header.call_id, header.chunk_index, header.cache_epoch};
  check_control_schema(control);
  if (header.action != header_action(control.kind)) {
    throw Error(ErrorCode::kSchema, "control frame header action " + std::string(action_name(header.action)) +
                                        " does not match its body kind");
  }
  const ProtocolVersion required = control.kind == ControlKind::kHello ? kHandshakeProtocolVersion : expect.version;
  if (required != 0 && header.version != required) {
    throw Error(ErrorCode::kVersion, "control frame version " + std::to_string(header.version) + ", expected " +
                                         std::to_string(required));
  }
  return decoded;
}

}  // namespace lockstep
