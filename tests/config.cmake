# config.cmake — `config-doc` target: regenerate docs/config.md and configs/default.yaml
# from the key table (src/io/config_keys.c). unit.config fails while they are stale.
add_custom_target(config-doc
  COMMAND ${CMAKE_COMMAND} -E env BB_REGEN_DOCS=1 BB_SOURCE=${PROJECT_SOURCE_DIR}
          BB_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/tmp BB_SHARED=${BB_SHARED_DIR} $<TARGET_FILE:test_config>
  DEPENDS test_config
  COMMENT "Regenerating docs/config.md and configs/default.yaml from the configuration key table"
  VERBATIM)
