# Runs inside `cmake --install` (cmake/install.cmake sets the director_* variables): writes
# deploy/systemd/*.service.in and haproxy.env.in with the paths of the prefix being installed
# to, then installs them (DESTDIR applies, as to every other file).

# An install directory as an absolute path: relative ones are under the prefix.
function(director_absolute_install_dir out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

director_absolute_install_dir(DIRECTOR_BINDIR "${director_install_bindir}")
director_absolute_install_dir(DIRECTOR_HAPROXY_DIR "${director_install_haproxy_dir}")
director_absolute_install_dir(DIRECTOR_DOCDIR "${director_install_docdir}")
director_absolute_install_dir(unit_dir "${director_install_unit_dir}")
# GNUInstallDirs' rule for the configuration directory: /etc for the prefixes / and /usr.
if(NOT IS_ABSOLUTE "${director_install_sysconfdir}"
   AND (CMAKE_INSTALL_PREFIX STREQUAL "/" OR CMAKE_INSTALL_PREFIX STREQUAL "/usr"))
  set(DIRECTOR_SYSCONFDIR "/${director_install_sysconfdir}")
else()
  director_absolute_install_dir(DIRECTOR_SYSCONFDIR "${director_install_sysconfdir}")
endif()

# One work directory per destination: installs to several prefixes may run at once (tests/install).
string(MD5 destination "$ENV{DESTDIR}|${CMAKE_INSTALL_PREFIX}")
set(work_dir "${director_work_dir}/${destination}")
foreach(unit director-agent director-spawner)
  configure_file("${director_templates}/${unit}.service.in"
                 "${work_dir}/${unit}.service" @ONLY)
  file(INSTALL "${work_dir}/${unit}.service" DESTINATION "${unit_dir}")
endforeach()
configure_file("${director_templates}/haproxy.env.in" "${work_dir}/haproxy.env" @ONLY)
file(INSTALL "${work_dir}/haproxy.env" DESTINATION "${DIRECTOR_DOCDIR}/examples")
