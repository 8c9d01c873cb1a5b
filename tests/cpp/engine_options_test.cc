#include "engine/engine_options.h"

#include <gtest/gtest.h>
#include <zmq.h>

#include <stdexcept>
#include <string>

namespace clipper {
namespace {

struct Keypair {
  std::string public_key;
  std::string secret_key;
};

Keypair new_keypair() {
  char public_key[41];
  char secret_key[41];
  EXPECT_EQ(zmq_curve_keypair(public_key, secret_key), 0);
  return {public_key, secret_key};
}

std::string error_of(const EngineOptions& options) {
  try {
    options.validate();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "";
}

TEST(EngineOptions, DefaultsAreValid) { EXPECT_EQ(error_of(EngineOptions{}), ""); }

TEST(EngineOptions, TheFrontendsSpinIsBounded) {
  EngineOptions options;
  for (int64_t micros : {0, 50, 10000}) {
    options.shm_response_spin_micros = micros;
    EXPECT_EQ(error_of(options), "") << micros;
  }
  for (int64_t micros : {-1, 10001}) {
    options.shm_response_spin_micros = micros;
    EXPECT_NE(error_of(options).find("shm_response_spin_micros must be between 0 and 10000"), std::string::npos);
  }
}

TEST(EngineOptions, TheFrontendsSpinCostBoundIsBounded) {
  EngineOptions options;
  for (int64_t micros : {0, 7, 10000}) {
    options.shm_response_spin_cost_micros = micros;
    EXPECT_EQ(error_of(options), "") << micros;
  }
  for (int64_t micros : {-1, 10001}) {
    options.shm_response_spin_cost_micros = micros;
    EXPECT_NE(error_of(options).find("shm_response_spin_cost_micros must be between 0 and 10000"),
              std::string::npos);
  }
}

TEST(EngineOptions, AnUnauthenticatedRpcPortBindsOnlyToLoopback) {
  EngineOptions options;
  for (const char* loopback : {"127.0.0.1", "127.0.0.2", "::1", "localhost"}) {
    options.bind_address = loopback;
    EXPECT_EQ(error_of(options), "") << loopback;
  }
  for (const char* exposed : {"0.0.0.0", "::", "10.1.2.3", "example.org"}) {
    options.bind_address = exposed;
    EXPECT_NE(error_of(options).find("refusing to bind the RPC port on"), std::string::npos) << exposed;
  }
  const Keypair server = new_keypair();
  options.rpc_curve_secret_key = server.secret_key;
  options.rpc_curve_client_keys = {new_keypair().public_key};
  EXPECT_EQ(error_of(options), "");  // 0.0.0.0 with CURVE
}

TEST(EngineOptions, CurveKeysAreChecked) {
  EngineOptions options;
  options.rpc_curve_secret_key = new_keypair().secret_key;
  EXPECT_NE(error_of(options).find("rpc_curve_client_keys is empty"), std::string::npos);
  options.rpc_curve_client_keys = {"not-z85"};
  EXPECT_NE(error_of(options).find("'not-z85' is not 40 characters of Z85"), std::string::npos);
  options.rpc_curve_client_keys = {new_keypair().public_key};
  options.rpc_curve_secret_key = std::string(40, ' ');
  EXPECT_NE(error_of(options).find("rpc_curve_secret_key must be 40 characters"), std::string::npos);
  options.rpc_curve_secret_key.clear();
  EXPECT_NE(error_of(options).find("needs rpc_curve_secret_key"), std::string::npos);
}

}  // namespace
}  // namespace clipper
