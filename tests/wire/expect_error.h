// EXPECT_LOCKSTEP_ERROR(statement, code, "text"): the statement throws a
// lockstep::Error of exactly `code` whose message contains `text` (the field,
// key or rank the error must name).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "lockstep/error.h"

#define EXPECT_LOCKSTEP_ERROR(statement, expected_code, text)                                          \
  do {                                                                                                 \
    try {                                                                                              \
      statement;                                                                                       \
      ADD_FAILURE() << "expected lockstep::Error(" << ::lockstep::error_code_name(expected_code)       \
                    << ") from: " #statement;                                                          \
    } catch (const ::lockstep::Error& e) {                                                             \
      EXPECT_EQ(::lockstep::error_code_name(e.code()), ::lockstep::error_code_name(expected_code))     \
          << e.what();                                                                                 \
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos)                                   \
          << "message lacks '" << (text) << "': " << e.what();                                         \
    }                                                                                                  \
  } while (0)
