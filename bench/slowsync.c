/* An SD card's flush, emulated: every fsync, fdatasync and syncfs of the process this
 * library is preloaded into (LD_PRELOAD) waits SLOWSYNC_MS milliseconds, then does the
 * real call. SLOWSYNC_CALLS names the calls delayed (default: all three, as
 * "fsync,fdatasync,syncfs"); SLOWSYNC_LOG names a file to which each delayed call
 * appends "NAME enter SECONDS" and "NAME return SECONDS" (CLOCK_MONOTONIC). Built by
 * bench/pi.py, and by the tests, with the machine's C compiler. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long delay_ns(void)
{
    static long ns = -1;
    if (ns < 0) {
        const char *ms = getenv("SLOWSYNC_MS");
        ns = ms ? (long)(atof(ms) * 1e6) : 0;
    }
    return ns;
}

static int delayed(const char *name)
{
    const char *calls = getenv("SLOWSYNC_CALLS");
    if (!calls)
        return 1;
    size_t length = strlen(name);
    for (const char *at = strstr(calls, name); at; at = strstr(at + 1, name))
        if ((at == calls || at[-1] == ',') && (at[length] == ',' || at[length] == '\0'))
            return 1;
    return 0;
}

static void note(const char *name, const char *what)
{
    const char *path = getenv("SLOWSYNC_LOG");
    if (!path)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char line[128];
    int length = snprintf(line, sizeof line, "%s %s %ld.%09ld\n", name, what, (long)now.tv_sec,
                          now.tv_nsec);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, line, (size_t)length) < 0) {
        }
        close(fd);
    }
}

static void wait_delay(void)
{
    struct timespec left = {delay_ns() / 1000000000L, delay_ns() % 1000000000L};
    while (nanosleep(&left, &left) != 0)
        ;
}

#define SLOW(name)                                                   \
    int name(int fd)                                                 \
    {                                                                \
        static int (*real)(int);                                     \
        if (!real)                                                   \
            real = (int (*)(int))dlsym(RTLD_NEXT, #name);            \
        if (!delayed(#name))                                         \
            return real(fd);                                         \
        note(#name, "enter");                                        \
        wait_delay();                                                \
        int result = real(fd);                                       \
        note(#name, "return");                                       \
        return result;                                               \
    }

SLOW(fsync)
SLOW(fdatasync)
SLOW(syncfs)
