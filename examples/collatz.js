// Steps for each number to reach 1 under the Collatz map, with progress reports.
function collatzSteps(start) {
  let steps = 0;
  for (let n = start; n !== 1; steps++) {
    n = n % 2 === 0 ? n / 2 : 3 * n + 1;
  }
  progress(1);
  return { start, steps };
}
