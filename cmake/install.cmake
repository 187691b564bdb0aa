# What `cmake --install` gives an operator (docs/operations.md, "Installing"), under the
# GNUInstallDirs layout of CMAKE_INSTALL_PREFIX (/usr/local unless configured otherwise):
#   bin/director-agent, bin/director-spawner        (agent/ and spawner/CMakeLists.txt)
#   share/container-director/haproxy/               haproxy.cfg, spoe.conf, pages/: the reference
#                                                   set DIRECTOR_HAPROXY_DIR points at
#   lib/systemd/system/director-*.service           the units, naming the install prefix's paths
#   share/doc/container-director/                   CHANGELOG.md, examples/ (environment files)
# Nothing test-only: tests/, tools/ and the compose demo stay in the source tree.

# The project's own files, replaced by every upgrade: site-specific values come from the
# environment (docs/configuration.md), so nobody edits them in place.
set(DIRECTOR_INSTALL_HAPROXY_DIR "${CMAKE_INSTALL_DATADIR}/container-director/haproxy")
install(FILES haproxy/haproxy.cfg haproxy/spoe.conf DESTINATION ${DIRECTOR_INSTALL_HAPROXY_DIR})
install(DIRECTORY haproxy/pages DESTINATION ${DIRECTOR_INSTALL_HAPROXY_DIR})

install(FILES CHANGELOG.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
# Examples of the environment files the units read (and of HAProxy's, written at install time
# below: it names the installed haproxy directory).
install(FILES deploy/systemd/director-agent.env deploy/systemd/director-spawner.env
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# systemd's search path holds both /usr/lib/systemd/system and /usr/local/lib/systemd/system.
set(DIRECTOR_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where the systemd units are installed, relative to the install prefix (or absolute)")
# The units and haproxy.env are written at install time, so that they name the prefix actually
# installed to (`cmake --install build --prefix /usr`, cpack's /usr), not the one configured.
install(CODE "
  set(director_templates \"${PROJECT_SOURCE_DIR}/deploy/systemd\")
  set(director_work_dir \"${PROJECT_BINARY_DIR}/systemd\")
  set(director_install_bindir \"${CMAKE_INSTALL_BINDIR}\")
  set(director_install_sysconfdir \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(director_install_haproxy_dir \"${DIRECTOR_INSTALL_HAPROXY_DIR}\")
  set(director_install_unit_dir \"${DIRECTOR_SYSTEMD_UNIT_DIR}\")
  set(director_install_docdir \"${CMAKE_INSTALL_DOCDIR}\")
")
install(SCRIPT cmake/install-prefixed-files.cmake)
