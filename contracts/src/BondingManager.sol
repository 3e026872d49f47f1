// SPDX-License-Identifier: MIT
// Test stand-in for Livepeer's BondingManager: the transcoder pool walk and
// the per-transcoder views gateways read, with the same function signatures.
pragma solidity ^0.8.20;

contract BondingManager {
    struct Transcoder {
        uint256 lastRewardRound;
        uint256 rewardCut;
        uint256 feeShare;
        uint256 activationRound;
        uint256 deactivationRound;
        uint256 stake;
        address next;
        bool registered;
    }

    address public owner;
    address public first;
    address public last;
    mapping(address => Transcoder) internal transcoders;

    constructor() { owner = msg.sender; }

    // register adds a transcoder to the pool (test setup only).
    function register(address t, uint256 stake, uint256 rewardCut, uint256 feeShare, uint256 activationRound, uint256 deactivationRound) external {
        require(msg.sender == owner, "only owner");
        Transcoder storage tr = transcoders[t];
        if (!tr.registered) {
            if (first == address(0)) { first = t; } else { transcoders[last].next = t; }
            last = t;
            tr.registered = true;
        }
        tr.stake = stake;
        tr.rewardCut = rewardCut;
        tr.feeShare = feeShare;
        tr.activationRound = activationRound;
        tr.deactivationRound = deactivationRound;
    }

    function getFirstTranscoderInPool() external view returns (address) { return first; }

    function getNextTranscoderInPool(address t) external view returns (address) { return transcoders[t].next; }

    function getTranscoder(address t) external view returns (
        uint256 lastRewardRound, uint256 rewardCut, uint256 feeShare, uint256 lastActiveStakeUpdateRound,
        uint256 activationRound, uint256 deactivationRound, uint256 activeCumulativeRewards,
        uint256 cumulativeRewards, uint256 cumulativeFees, uint256 lastFeeRound)
    {
        Transcoder storage tr = transcoders[t];
        return (tr.lastRewardRound, tr.rewardCut, tr.feeShare, 0, tr.activationRound, tr.deactivationRound, 0, 0, 0, 0);
    }

    function transcoderTotalStake(address t) external view returns (uint256) { return transcoders[t].stake; }

    // transcoderStatus: 0 NotRegistered, 1 Registered.
    function transcoderStatus(address t) external view returns (uint8) { return transcoders[t].registered ? 1 : 0; }

    function isActiveTranscoder(address t) external view returns (bool) {
        Transcoder storage tr = transcoders[t];
        return tr.registered && tr.stake > 0;
    }
}
