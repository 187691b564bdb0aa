# A Debian package of what `cmake --install` installs (cmake/install.cmake), under /usr:
#   cmake --build --preset default && cd build/default && cpack     # container-director_<version>_<arch>.deb
#   sudo apt install ./container-director_*.deb
# Depends is computed by dpkg-shlibdeps from the binaries (libc6, libstdc++6, libgcc-s1,
# libc-ares2, libprometheus-cpp-core, libssl3); HAProxy is recommended, a container runtime suggested:
# either may run on another host. No maintainer scripts: the units are installed, not enabled
# (docs/operations.md, "Installing"). tests/install checks the package's files and Depends.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME container-director)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "One container per user behind HAProxy: director-agent (SPOE) and director-spawner")
set(CPACK_PACKAGE_DESCRIPTION
    "HAProxy proxies every request; director-agent, an HAProxy SPOE agent, tells it where each user's container is; director-spawner creates, starts and retires the containers through the Docker Engine API (Docker or Podman). Includes the reference HAProxy configuration and systemd units.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(DIRECTOR_PACKAGE_MAINTAINER "container-director maintainers <maintainers@container-director.invalid>"
    CACHE STRING "The .deb's Maintainer field")
set(CPACK_PACKAGE_CONTACT "${DIRECTOR_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "haproxy (>= 2.6)")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "podman | docker.io")
include(CPack)
