/* An SD card's flush, emulated: every fsync, fdatasync and syncfs of the process this
 * library is preloaded into (LD_PRELOAD) waits SLOWSYNC_MS milliseconds, then does the
 * real call. Built by bench/pi.py with the machine's C compiler. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static long delay_ns(void)
{
    static long ns = -1;
    if (ns < 0) {
        const char *ms = getenv("SLOWSYNC_MS");
        ns = ms ? (long)(atof(ms) * 1e6) : 0;
    }
    return ns;
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
        wait_delay();                                                \
        return real(fd);                                             \
    }

SLOW(fsync)
SLOW(fdatasync)
SLOW(syncfs)
