/* The reference child for spawn benchmarks: starts and exits. */
int main(void)
{
    return 0;
}
