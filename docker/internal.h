/*
 * internal.h - what the docker module's files share.
 */
#ifndef DSTACK_DOCKER_INTERNAL_H
#define DSTACK_DOCKER_INTERNAL_H

#include "lib/lib.h"

/*
 * The credentials `docker login` left for image's registry, as the
 * X-Registry-Auth header dockerd takes, appended to header; nothing when
 * there are none (auth.c).
 */
void docker_registry_auth(const char *image, struct strbuf *header);

#endif
