// Checks on the text that goes on the wire (keys, strings, reasons).
#pragma once

#include <cstddef>
#include <string_view>

namespace lockstep::wire_detail {

// Throws Error{kEncode} naming `what` when `key` is empty, longer than
// bytes_max or outside [A-Za-z0-9_.:/-]: keys appear in logs, dumps and
// doctor verdicts, so they stay printable and unambiguous.
void check_key(std::string_view key, std::string_view what, std::size_t bytes_max);

// Throws Error{kEncode} naming the field when `text` is not valid UTF-8
// (overlong forms, surrogates and code points past U+10FFFF included) or is
// longer than kStringBytesMax. The field is `field`, or `field 'key'` when a
// key is given; the name is only built on failure (this runs per meta value).
void check_text(std::string_view text, std::string_view field, std::string_view key = {});

// check_text plus non-empty: ERROR frames must say why.
void check_reason(std::string_view reason, std::string_view field);

}  // namespace lockstep::wire_detail
