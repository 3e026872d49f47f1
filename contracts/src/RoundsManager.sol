// SPDX-License-Identifier: MIT
// Test stand-in for Livepeer's RoundsManager: the current round and its block hash.
pragma solidity ^0.8.20;

contract RoundsManager {
    uint256 public currentRound;
    mapping(uint256 => bytes32) internal hashes;

    // initializeRound starts the next round, recording the previous block's hash.
    function initializeRound() external {
        currentRound += 1;
        hashes[currentRound] = blockhash(block.number - 1);
    }

    function blockHashForRound(uint256 round) external view returns (bytes32) { return hashes[round]; }
}
