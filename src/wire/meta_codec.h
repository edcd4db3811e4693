// The canonical meta section codec (layout in include/lockstep/meta.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "lockstep/meta.h"
#include "wire/bytes.h"

namespace lockstep::wire_detail {

// Checks every rule of meta.h and returns the exact encoded size. Throws
// Error{kEncode|kLimit} naming the key.
std::size_t meta_section_bytes(const Meta& meta);

// Writes the section; REQUIRES meta_section_bytes(meta) succeeded.
void write_meta(Writer& out, const Meta& meta);

// Reads exactly `section` as `count` entries, rejecting non-canonical bytes
// (unsorted or duplicate keys, unknown type tags, trailing bytes: kDecode) and
// anything meta_section_bytes would reject.
Meta read_meta(std::span<const std::uint8_t> section, std::size_t count);

}  // namespace lockstep::wire_detail
